#include "sparrow/core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>

namespace sparrow {
namespace {

TEST(DType, Bf16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), h) << h;
  }
}

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly between bf16 1.0 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  // 1 + 3*2^-8 is between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20))),
            1.0f + std::ldexp(1.0f, -7));
}

TEST(DType, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // tie rounds to even: infinity
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even zero
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);
}

TEST(DType, F8E4M3RoundTripsEveryValue) {
  for (uint32_t v = 0; v < 256; ++v) {
    const float f = f8e4m3_to_f32(uint8_t(v));
    if (std::isnan(f)) {
      EXPECT_EQ(v & 0x7f, 0x7fu);
      continue;
    }
    if (f == 0.0f) continue;  // +0 and -0 both exist
    ASSERT_EQ(f32_to_f8e4m3(f), v) << v << " " << f;
  }
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(f32_to_f8e4m3(464.0f), 0x7e);  // tie to even: 448
  EXPECT_EQ(f32_to_f8e4m3(470.0f), 0x7f);  // rounds past 448: NaN, as torch
  EXPECT_EQ(f32_to_f8e4m3_saturate(1e6f), 0x7e);
  EXPECT_EQ(f32_to_f8e4m3_saturate(-1e6f), 0xfe);
  EXPECT_EQ(f32_to_f8e4m3(1.0625f), 0x38);  // tie between 1.0 and 1.125 -> 1.0
  EXPECT_EQ(f32_to_f8e4m3(1.1875f), 0x3a);  // tie between 1.125 and 1.25 -> 1.25
}

}  // namespace
}  // namespace sparrow
