// Element types and exact conversions between them.
//
// bf16 and fp16 are stored as raw uint16 bits; fp8 e4m3 (the OCP "fn" variant: no inf,
// 0x7f/0xff are NaN, max 448) as uint8. Narrowing conversions round to nearest even, as
// torch does; widening conversions are exact.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace sparrow {

enum class DType : uint8_t { kF32, kBF16, kF16, kF8E4M3, kI32, kI64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

std::string_view dtype_name(DType t);
// Parses "float32"/"bfloat16"/"float16" (and short forms) as used by --dtype; throws InputError.
DType parse_dtype(std::string_view name);

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return uint16_t(u >> 16);
}
inline float round_to_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f8e4m3_to_f32(uint8_t v);
// Round to nearest even; magnitudes beyond the largest finite value become NaN (torch's cast).
uint8_t f32_to_f8e4m3(float f);
// Same, but clamps to +-448 first: what a quantizer wants.
uint8_t f32_to_f8e4m3_saturate(float f);

// Reads element i of a float-typed buffer as fp32.
inline float load_as_f32(const void* p, DType t, size_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF8E4M3: return f8e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
    case DType::kI32: return float(static_cast<const int32_t*>(p)[i]);
    case DType::kI64: return float(static_cast<const int64_t*>(p)[i]);
  }
  return 0.f;
}

// Writes fp32 value v as element i of a float-typed buffer (rounding as above).
inline void store_from_f32(void* p, DType t, size_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(p)[i] = v; return;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); return;
    case DType::kF16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); return;
    case DType::kF8E4M3: static_cast<uint8_t*>(p)[i] = f32_to_f8e4m3(v); return;
    case DType::kI32: static_cast<int32_t*>(p)[i] = int32_t(v); return;
    case DType::kI64: static_cast<int64_t*>(p)[i] = int64_t(v); return;
  }
}

// Converts n elements between float types (any pair, including identical types).
void convert(const void* src, DType src_t, void* dst, DType dst_t, size_t n);

}  // namespace sparrow
