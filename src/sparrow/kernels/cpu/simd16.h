// A 16-lane fp32 vector and the few operations the CPU kernels need, implemented once
// with AVX-512 (one zmm) and once with AVX2 (two ymm: lanes 0-7 and 8-15). Both
// implementations perform the same IEEE operations lane by lane, in the same order, so a
// kernel written against this header computes bit-identical results on either ISA (except
// for subnormals, which vdpbf16ps flushes; see docs/numerics.md).
//
// Include ONLY from *_avx512.cpp / *_avx2.cpp files. Everything here has internal linkage
// (anonymous namespace), so the two ISA variants never collide at link time.
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__)
#error "simd16.h must be compiled with AVX2+FMA or AVX-512 flags (an *_avx2.cpp / *_avx512.cpp file)"
#endif

// gcc 12 warns about _mm256_undefined_pd inside its own reduce intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace sparrow::cpu {
namespace {

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#define SPARROW_SIMD16_AVX512 1

struct V16 { __m512 v; };

inline V16 vzero() { return {_mm512_setzero_ps()}; }
inline V16 vset1(float a) { return {_mm512_set1_ps(a)}; }
inline V16 vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline V16 vload_bf16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
}
// First n (< 16) lanes from p, the rest 0.
inline V16 vload_tail(const float* p, int n) {
  return {_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), p)};
}
inline void vstore(float* p, V16 a) { _mm512_storeu_ps(p, a.v); }
inline V16 vadd(V16 a, V16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline V16 vsub(V16 a, V16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline V16 vmul(V16 a, V16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V16 vdiv(V16 a, V16 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline V16 vmax(V16 a, V16 b) { return {_mm512_max_ps(a.v, b.v)}; }
inline V16 vmin(V16 a, V16 b) { return {_mm512_min_ps(a.v, b.v)}; }
inline V16 vfma(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }   // a*b+c
inline V16 vfnma(V16 a, V16 b, V16 c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; } // c-a*b
inline V16 vround(V16 a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
// 2^n for integral n in [-126, 127] held as float.
inline V16 vexp2i(V16 n) {
  const __m512i i = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(i, 23))};
}
// Lanes >= n (0 <= n <= 16) replaced by fill.
inline V16 vkeep_first(V16 a, int n, float fill) {
  const __mmask16 m = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
  return {_mm512_mask_blend_ps(m, _mm512_set1_ps(fill), a.v)};
}
inline float vhmax(V16 a) { return _mm512_reduce_max_ps(a.v); }

// The fixed horizontal sum: s8[i] = a[i] + a[i+8]; s4[i] = s8[i] + s8[i+4];
// s2[i] = s4[i] + s4[i+2]; result = s2[0] + s2[1].
inline float vhsum(V16 a) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// out lane i = vhsum(a[i]) for 16 vectors, with exactly the same additions as vhsum.
inline V16 vreduce16(const V16* a) {
  __m512 b[8], c[4], d[2];
  for (int k = 0; k < 8; ++k)
    b[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k].v, a[2 * k + 1].v, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * k].v, a[2 * k + 1].v, _MM_SHUFFLE(3, 2, 3, 2)));
  for (int k = 0; k < 4; ++k)
    c[k] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int k = 0; k < 2; ++k)
    d[k] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * k], c[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[2 * k], c[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // r lane 4j+m holds the sum of a[j+4m].
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return {_mm512_permutexvar_ps(idx, r)};
}

// 32 bf16 values (16 pairs) of x, prepared for vdot_bf16.
struct XB { __m512bh v; };
// 32 bf16 values of w.
struct WB { __m512bh v; };
inline XB load_xb(const uint16_t* p) { return {(__m512bh)_mm512_loadu_si512(p)}; }
inline WB load_wb(const uint16_t* p) { return {(__m512bh)_mm512_loadu_si512(p)}; }
// First n (< 32) values from p, the rest 0.
inline XB load_xb_tail(const uint16_t* p, int n) {
  return {(__m512bh)_mm512_maskz_loadu_epi16(__mmask32((1ull << n) - 1ull), p)};
}
inline WB load_wb_tail(const uint16_t* p, int n) {
  return {(__m512bh)_mm512_maskz_loadu_epi16(__mmask32((1ull << n) - 1ull), p)};
}
// acc lane i += x[2i+1]*w[2i+1], then += x[2i]*w[2i] (bf16 products are exact in fp32).
inline V16 vdot_bf16(V16 acc, XB x, WB w) { return {_mm512_dpbf16_ps(acc.v, x.v, w.v)}; }

// 32 fp32 values of x in "pair" layout (see pack_pairs): odd[i] = x[2i+1], even[i] = x[2i].
struct XF { __m512 odd, even; };
// p: 16 odd-position values then 16 even-position values (64-byte aligned or not).
inline XF load_xf(const float* p) { return {_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16)}; }
// fp32 x times bf16 w in the vdpbf16ps lane layout, both products with FMA (one rounding
// each): acc lane i = fma(x[2i+1], w[2i+1], acc), then fma(x[2i], w[2i], acc).
inline V16 vdot_f32_bf16(V16 acc, XF x, WB w) {
  const __m512i wi = (__m512i)w.v;
  const __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(wi, _mm512_set1_epi32(int(0xffff0000u))));
  const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(wi, 16));
  return {_mm512_fmadd_ps(x.even, we, _mm512_fmadd_ps(x.odd, wo, acc.v))};
}

#else  // AVX2
#define SPARROW_SIMD16_AVX2 1

struct V16 { __m256 lo, hi; };

inline V16 vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V16 vset1(float a) { return {_mm256_set1_ps(a), _mm256_set1_ps(a)}; }
inline V16 vload(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline __m256 bf16x8_to_f32(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline V16 vload_bf16(const uint16_t* p) { return {bf16x8_to_f32(p), bf16x8_to_f32(p + 8)}; }
inline V16 vload_tail(const float* p, int n) {
  alignas(32) float buf[16] = {};
  std::memcpy(buf, p, size_t(n) * sizeof(float));
  return vload(buf);
}
inline void vstore(float* p, V16 a) { _mm256_storeu_ps(p, a.lo); _mm256_storeu_ps(p + 8, a.hi); }
inline V16 vadd(V16 a, V16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline V16 vsub(V16 a, V16 b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
inline V16 vmul(V16 a, V16 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline V16 vdiv(V16 a, V16 b) { return {_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)}; }
inline V16 vmax(V16 a, V16 b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
inline V16 vmin(V16 a, V16 b) { return {_mm256_min_ps(a.lo, b.lo), _mm256_min_ps(a.hi, b.hi)}; }
inline V16 vfma(V16 a, V16 b, V16 c) {
  return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
inline V16 vfnma(V16 a, V16 b, V16 c) {
  return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)};
}
inline V16 vround(V16 a) {
  return {_mm256_round_ps(a.lo, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
          _mm256_round_ps(a.hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline __m256 exp2i8(__m256 n) {
  const __m256i i = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(i, 23));
}
inline V16 vexp2i(V16 n) { return {exp2i8(n.lo), exp2i8(n.hi)}; }
inline V16 vkeep_first(V16 a, int n, float fill) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 mlo = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota));
  const __m256 mhi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), iota));
  const __m256 f = _mm256_set1_ps(fill);
  return {_mm256_blendv_ps(f, a.lo, mlo), _mm256_blendv_ps(f, a.hi, mhi)};
}
inline float vhmax(V16 a) {
  const __m256 m8 = _mm256_max_ps(a.lo, a.hi);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  return _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
}
inline float vhsum(V16 a) {
  const __m256 s8 = _mm256_add_ps(a.lo, a.hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
// Sums of 8 vectors' s8 halves, in natural order, with vhsum's additions.
inline __m256 reduce8_s8(const __m256* s8) {
  __m256 c[4], d[2];
  for (int k = 0; k < 4; ++k)
    c[k] = _mm256_add_ps(_mm256_permute2f128_ps(s8[2 * k], s8[2 * k + 1], 0x20),
                         _mm256_permute2f128_ps(s8[2 * k], s8[2 * k + 1], 0x31));
  for (int k = 0; k < 2; ++k)
    d[k] = _mm256_add_ps(_mm256_shuffle_ps(c[2 * k], c[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(c[2 * k], c[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // r: lanes 0-3 hold sums of inputs 0,2,4,6; lanes 4-7 of inputs 1,3,5,7.
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
inline V16 vreduce16(const V16* a) {
  __m256 s8[16];
  for (int k = 0; k < 16; ++k) s8[k] = _mm256_add_ps(a[k].lo, a[k].hi);
  return {reduce8_s8(s8), reduce8_s8(s8 + 8)};
}

// x pre-split into fp32 odd/even elements of each 16-value half.
struct XB { __m256 elo, olo, ehi, ohi; };
struct WB { __m256i lo, hi; };
inline __m256 bf16_even(__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
inline __m256 bf16_odd(__m256i v) {
  return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int(0xffff0000u))));
}
inline WB load_wb(const uint16_t* p) {
  return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16))};
}
inline XB load_xb(const uint16_t* p) {
  const WB w = load_wb(p);
  return {bf16_even(w.lo), bf16_odd(w.lo), bf16_even(w.hi), bf16_odd(w.hi)};
}
inline XB load_xb_tail(const uint16_t* p, int n) {
  alignas(32) uint16_t buf[32] = {};
  std::memcpy(buf, p, size_t(n) * 2);
  return load_xb(buf);
}
inline WB load_wb_tail(const uint16_t* p, int n) {
  alignas(32) uint16_t buf[32] = {};
  std::memcpy(buf, p, size_t(n) * 2);
  return load_wb(buf);
}
// Same operations as vdpbf16ps: odd pair element first, then even, each product exact.
inline V16 vdot_bf16(V16 acc, XB x, WB w) {
  acc.lo = _mm256_fmadd_ps(x.olo, bf16_odd(w.lo), acc.lo);
  acc.hi = _mm256_fmadd_ps(x.ohi, bf16_odd(w.hi), acc.hi);
  acc.lo = _mm256_fmadd_ps(x.elo, bf16_even(w.lo), acc.lo);
  acc.hi = _mm256_fmadd_ps(x.ehi, bf16_even(w.hi), acc.hi);
  return acc;
}

struct XF { __m256 olo, ohi, elo, ehi; };
inline XF load_xf(const float* p) {
  return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), _mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)};
}
inline V16 vdot_f32_bf16(V16 acc, XF x, WB w) {
  acc.lo = _mm256_fmadd_ps(x.olo, bf16_odd(w.lo), acc.lo);
  acc.hi = _mm256_fmadd_ps(x.ohi, bf16_odd(w.hi), acc.hi);
  acc.lo = _mm256_fmadd_ps(x.elo, bf16_even(w.lo), acc.lo);
  acc.hi = _mm256_fmadd_ps(x.ehi, bf16_even(w.hi), acc.hi);
  return acc;
}
#endif

// Packs n fp32 values (n <= 32, the rest zero) into the pair layout load_xf reads:
// dst[i] = x[2i+1], dst[16 + i] = x[2i] for i < 16.
inline void pack_pairs(const float* x, int n, float* dst) {
  for (int i = 0; i < 16; ++i) {
    dst[i] = 2 * i + 1 < n ? x[2 * i + 1] : 0.f;
    dst[16 + i] = 2 * i < n ? x[2 * i] : 0.f;
  }
}

// exp(x) for x <= 0 (Cephes expf polynomial; ~1-2 ulp). Inputs below -87.3 give ~1e-38,
// not 0: callers mask lanes that must be exactly 0.
inline V16 vexp(V16 x) {
  x = vmax(vmin(x, vset1(88.3762626647949f)), vset1(-87.3365447504f));
  const V16 n = vround(vmul(x, vset1(1.44269504088896341f)));
  V16 r = vfnma(n, vset1(0.693359375f), x);
  r = vfnma(n, vset1(-2.12194440e-4f), r);
  V16 y = vset1(1.9875691500e-4f);
  y = vfma(y, r, vset1(1.3981999507e-3f));
  y = vfma(y, r, vset1(8.3334519073e-3f));
  y = vfma(y, r, vset1(4.1665795894e-2f));
  y = vfma(y, r, vset1(1.6666665459e-1f));
  y = vfma(y, r, vset1(5.0000001201e-1f));
  y = vfma(y, vmul(r, r), r);
  y = vadd(y, vset1(1.0f));
  return vmul(y, vexp2i(n));
}

}  // namespace
}  // namespace sparrow::cpu
