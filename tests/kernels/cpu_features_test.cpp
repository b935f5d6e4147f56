#include "sparrow/kernels/cpu/cpu_features.h"

#include <gtest/gtest.h>

#include "sparrow/core/error.h"

namespace sparrow::cpu {
namespace {

TEST(CpuFeatures, ParsesNames) {
  EXPECT_EQ(parse_isa("avx512"), Isa::kAvx512);
  EXPECT_EQ(parse_isa("avx2"), Isa::kAvx2);
  EXPECT_EQ(parse_isa("reference"), Isa::kReference);
  EXPECT_THROW(parse_isa("sse9"), InputError);
  EXPECT_EQ(isa_name(Isa::kAvx2), "avx2");
}

TEST(CpuFeatures, OverrideIsClampedToDetected) {
  EXPECT_TRUE(isa_supported(Isa::kReference));
  set_isa(Isa::kReference);
  EXPECT_EQ(active_isa(), Isa::kReference);
  set_isa(Isa::kAvx512);
  EXPECT_EQ(active_isa(), detected_isa());
  reset_isa();
  EXPECT_LE(int(active_isa()), int(detected_isa()));
}

}  // namespace
}  // namespace sparrow::cpu
