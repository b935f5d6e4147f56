#include "sparrow/core/dtype.h"

#include <cmath>

#include "sparrow/core/error.h"

namespace sparrow {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    case DType::kF8E4M3: return "float8_e4m3fn";
    case DType::kI32: return "int32";
    case DType::kI64: return "int64";
  }
  return "?";
}

DType parse_dtype(std::string_view name) {
  if (name == "float32" || name == "fp32" || name == "float") return DType::kF32;
  if (name == "bfloat16" || name == "bf16") return DType::kBF16;
  if (name == "float16" || name == "fp16" || name == "half") return DType::kF16;
  throw_input_error("unsupported dtype '{}' (supported: bfloat16, float32, float16)", name);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp != 0) return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
  if (man == 0) return f32_from_bits(sign);
  // Subnormal: value = man * 2^-24, exact in fp32.
  const float v = std::ldexp(float(man), -24);
  return sign ? -v : v;
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;          // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;         // rounds to >= 65520: inf
  if (a >= 0x38800000u) {                              // normal half
    uint32_t r = a - 0x38000000u;                      // rebias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);                   // round to nearest even on 13 dropped bits
    return sign | uint16_t(r >> 13);
  }
  // Subnormal or zero: value / 2^-24, rounded to nearest even integer.
  const float scaled = std::ldexp(f32_from_bits(a), 24);
  return sign | uint16_t(std::nearbyint(scaled));      // default rounding mode is to-nearest-even
}

float f8e4m3_to_f32(uint8_t v) {
  const bool neg = v & 0x80;
  const uint32_t exp = (v >> 3) & 0xf;
  const uint32_t man = v & 0x7;
  float r;
  if (exp == 0xf && man == 0x7) return neg ? -NAN : NAN;
  if (exp == 0) r = std::ldexp(float(man), -9);       // subnormal: man * 2^-6 / 8
  else r = std::ldexp(1.0f + float(man) / 8.0f, int(exp) - 7);
  return neg ? -r : r;
}

uint8_t f32_to_f8e4m3(float f) {
  const uint8_t sign = (f32_bits(f) >> 24) & 0x80;
  if (std::isnan(f)) return 0x7f | sign;
  const float a = std::fabs(f);
  // Up to 464 (the midpoint between 448 and the unrepresentable 480) rounds to 448 by
  // ties-to-even below; anything that would round to 480 or beyond is NaN, as in torch.
  if (std::isinf(a) || a >= 480.0f) return 0x7f | sign;
  if (a < std::ldexp(1.0f, -6)) {                        // subnormal range, step 2^-9
    const int q = int(std::nearbyint(std::ldexp(a, 9)));  // 0..8; 8 is the smallest normal
    return sign | uint8_t(q);
  }
  int e;
  const float m = std::frexp(a, &e);                      // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1 + 7;
  int man = int(std::nearbyint((m * 2.0f - 1.0f) * 8.0f));  // 3 mantissa bits, RNE
  if (man == 8) { man = 0; ++exp; }
  if (exp > 15 || (exp == 15 && man == 7)) return 0x7f | sign;
  return sign | uint8_t(exp << 3) | uint8_t(man);
}

uint8_t f32_to_f8e4m3_saturate(float f) {
  if (std::isnan(f)) return f32_to_f8e4m3(f);
  return f32_to_f8e4m3(std::fmax(-448.0f, std::fmin(448.0f, f)));
}

void convert(const void* src, DType src_t, void* dst, DType dst_t, size_t n) {
  if (src_t == dst_t) {
    std::memcpy(dst, src, n * dtype_size(src_t));
    return;
  }
  // The two conversions on the hot path get tight loops the compiler vectorizes.
  if (src_t == DType::kBF16 && dst_t == DType::kF32) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    float* d = static_cast<float*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    return;
  }
  if (src_t == DType::kF32 && dst_t == DType::kBF16) {
    const float* s = static_cast<const float*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    return;
  }
  for (size_t i = 0; i < n; ++i) store_from_f32(dst, dst_t, i, load_as_f32(src, src_t, i));
}

}  // namespace sparrow
