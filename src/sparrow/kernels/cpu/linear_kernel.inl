// The GEMM kernel body shared by linear_avx512.cpp and linear_avx2.cpp (included after
// simd16.h, which supplies V16 / XB / WB for the ISA being compiled). The block shape
// (MT rows of x by NT rows of w) only changes which accumulators live in registers
// together: every accumulator sees the same K loop, so a y element never depends on T,
// the block shape, the tile sizes or the thread split.
#include <algorithm>

#include "sparrow/core/dtype.h"
#include "sparrow/kernels/cpu/linear_kernels.h"

namespace sparrow::cpu {
namespace {

// Bytes of x rows (per T tile) and of w rows (per N tile) kept cache-resident.
constexpr int64_t kXTileBytes = 256 * 1024;
constexpr int64_t kWTileBytes = 128 * 1024;

struct Bf16 {
  using Elem = uint16_t;
  static constexpr int kStep = 32;
  using X = XB;
  using W = WB;
  static X load_x(const Elem* p) { return load_xb(p); }
  static W load_w(const Elem* p) { return load_wb(p); }
  static X load_x_tail(const Elem* p, int n) { return load_xb_tail(p, n); }
  static W load_w_tail(const Elem* p, int n) { return load_wb_tail(p, n); }
  static V16 dot(V16 acc, X x, W w) { return vdot_bf16(acc, x, w); }
};

struct F32 {
  using Elem = float;
  static constexpr int kStep = 16;
  using X = V16;
  using W = V16;
  static X load_x(const Elem* p) { return vload(p); }
  static W load_w(const Elem* p) { return vload(p); }
  static X load_x_tail(const Elem* p, int n) { return vload_tail(p, n); }
  static W load_w_tail(const Elem* p, int n) { return vload_tail(p, n); }
  static V16 dot(V16 acc, X x, W w) { return vfma(x, w, acc); }
};

// out[m * NT + j] = full K reduction of x row xr[m] with w row wr[j]. pf[j] are the w rows
// of the next block: their cache lines are prefetched one block ahead of use, which keeps
// more DRAM reads in flight than the hardware prefetcher does on 4 KiB rows.
template <class P, int MT, int NT>
inline void block_dot(const typename P::Elem* const* xr, const typename P::Elem* const* wr,
                      const typename P::Elem* const* pf, int64_t K, float* out) {
  constexpr int kLinesPerStep = P::kStep * int(sizeof(typename P::Elem)) / 64;
  V16 acc[MT][NT];
#pragma GCC unroll 8
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[m][j] = vzero();
  int64_t k = 0;
  for (; k + P::kStep <= K; k += P::kStep) {
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j)
      for (int l = 0; l < kLinesPerStep; ++l)
        _mm_prefetch(reinterpret_cast<const char*>(pf[j] + k) + 64 * l, _MM_HINT_T0);
    typename P::X xv[MT];
#pragma GCC unroll 8
    for (int m = 0; m < MT; ++m) xv[m] = P::load_x(xr[m] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const typename P::W wv = P::load_w(wr[j] + k);
#pragma GCC unroll 8
      for (int m = 0; m < MT; ++m) acc[m][j] = P::dot(acc[m][j], xv[m], wv);
    }
  }
  if (k < K) {
    const int rem = int(K - k);
    typename P::X xv[MT];
#pragma GCC unroll 8
    for (int m = 0; m < MT; ++m) xv[m] = P::load_x_tail(xr[m] + k, rem);
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const typename P::W wv = P::load_w_tail(wr[j] + k, rem);
#pragma GCC unroll 8
      for (int m = 0; m < MT; ++m) acc[m][j] = P::dot(acc[m][j], xv[m], wv);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) out[m * NT + j] = vhsum(acc[m][j]);
}

inline float bias_at(const LinearArgs& a, int64_t n) {
  return a.bias ? load_as_f32(a.bias, a.bias_t, size_t(n)) : 0.f;
}

inline void store_y(const LinearArgs& a, int64_t t, int64_t n, float v) {
  if (a.bias) v += bias_at(a, n);
  store_from_f32(a.y, a.y_t, size_t(t * a.ldy + n), v);
}

// Rows [t0, t0 + MT) of y, columns [n0, n1): NT w rows at a time, the rest one by one.
template <class P, int MT, int NT>
void rows_block(const LinearArgs& a, int64_t t0, int64_t n0, int64_t n1) {
  using E = typename P::Elem;
  const E* x = static_cast<const E*>(a.x);
  const E* w = static_cast<const E*>(a.w);
  const E* xr[MT];
  for (int m = 0; m < MT; ++m) xr[m] = x + (t0 + m) * a.ldx;
  float out[MT * NT];
  int64_t n = n0;
  for (; n + NT <= n1; n += NT) {
    const E* wr[NT];
    const E* pf[NT];
    for (int j = 0; j < NT; ++j) {
      wr[j] = w + (n + j) * a.ldw;
      pf[j] = w + std::min(n + NT + j, n1 - 1) * a.ldw;
    }
    block_dot<P, MT, NT>(xr, wr, pf, a.K, out);
    for (int m = 0; m < MT; ++m)
      for (int j = 0; j < NT; ++j) store_y(a, t0 + m, n + j, out[m * NT + j]);
  }
  for (; n < n1; ++n) {
    const E* wr[1] = {w + n * a.ldw};
    const E* pf[1] = {w + std::min(n + 1, n1 - 1) * a.ldw};
    block_dot<P, MT, 1>(xr, wr, pf, a.K, out);
    for (int m = 0; m < MT; ++m) store_y(a, t0 + m, n, out[m]);
  }
}

template <class P>
void linear_tiles(const LinearArgs& a, int64_t n0, int64_t n1) {
  const int64_t row_bytes = std::max<int64_t>(1, a.K * int64_t(sizeof(typename P::Elem)));
  const int64_t tc = std::max<int64_t>(kMT, kXTileBytes / row_bytes / kMT * kMT);
  const int64_t nc = std::max<int64_t>(kNT, kWTileBytes / row_bytes / kNT * kNT);
  for (int64_t tt = 0; tt < a.T; tt += tc) {
    const int64_t te = std::min(a.T, tt + tc);
    for (int64_t nn = n0; nn < n1; nn += nc) {
      const int64_t ne = std::min(n1, nn + nc);
      int64_t t = tt;
      if (te - t == 1) {  // decode: one x row against many w rows at once
        rows_block<P, 1, kNT1>(a, t, nn, ne);
        continue;
      }
      for (; t + kMT <= te; t += kMT) rows_block<P, kMT, kNT>(a, t, nn, ne);
      switch (te - t) {
        case 3: if constexpr (kMT > 3) rows_block<P, 3, kNT>(a, t, nn, ne); break;
        case 2: if constexpr (kMT > 2) rows_block<P, 2, kNT>(a, t, nn, ne); break;
        case 1: rows_block<P, 1, kNT>(a, t, nn, ne); break;
        default: break;
      }
    }
  }
}

void linear_impl(const LinearArgs& a, int64_t n0, int64_t n1) {
  if (a.in_t == DType::kBF16)
    linear_tiles<Bf16>(a, n0, n1);
  else
    linear_tiles<F32>(a, n0, n1);
}

}  // namespace
}  // namespace sparrow::cpu
