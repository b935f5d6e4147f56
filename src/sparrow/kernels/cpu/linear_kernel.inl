// The GEMM kernel body shared by linear_avx512.cpp and linear_avx2.cpp (included after
// simd16.h, which supplies V16 / XB / WB / XF for the ISA being compiled). The block shape
// (MT rows of x by NT rows of w) only changes which accumulators live in registers
// together: every accumulator sees the same K loop, so a y element never depends on T,
// the block shape, the tile sizes, the loop order or the thread split.
#include <algorithm>
#include <cstring>

#include "sparrow/core/dtype.h"
#include "sparrow/kernels/cpu/linear_kernels.h"

namespace sparrow::cpu {
namespace {

// Bytes of x rows (per T tile) and of w rows (per N tile) kept cache-resident.
constexpr int64_t kXTileBytes = 256 * 1024;
constexpr int64_t kWTileBytes = 128 * 1024;

// x bf16, w bf16: vdpbf16ps (AVX2: exact emulation).
struct Bf16 {
  using XE = uint16_t;
  using WE = uint16_t;
  static constexpr int kStep = 32;
  using X = XB;
  using W = WB;
  static X load_x(const XE* p) { return load_xb(p); }
  static W load_w(const WE* p) { return load_wb(p); }
  static X load_x_tail(const XE* p, int n) { return load_xb_tail(p, n); }
  static W load_w_tail(const WE* p, int n) { return load_wb_tail(p, n); }
  static V16 dot(V16 acc, X x, W w) { return vdot_bf16(acc, x, w); }
};

// x f32, w f32: FMA.
struct F32 {
  using XE = float;
  using WE = float;
  static constexpr int kStep = 16;
  using X = V16;
  using W = V16;
  static X load_x(const XE* p) { return vload(p); }
  static W load_w(const WE* p) { return vload(p); }
  static X load_x_tail(const XE* p, int n) { return vload_tail(p, n); }
  static W load_w_tail(const WE* p, int n) { return vload_tail(p, n); }
  static V16 dot(V16 acc, X x, W w) { return vfma(x, w, acc); }
};

// x f32 (pre-packed in pair layout, zero-padded), w bf16: w widened by shift/mask, FMA in
// the vdpbf16ps lane order.
struct MixF32Bf16 {
  using XE = float;
  using WE = uint16_t;
  static constexpr int kStep = 32;
  using X = XF;
  using W = WB;
  static X load_x(const XE* p) { return load_xf(p); }
  static W load_w(const WE* p) { return load_wb(p); }
  static X load_x_tail(const XE* p, int) { return load_xf(p); }  // padding is zero
  static W load_w_tail(const WE* p, int n) { return load_wb_tail(p, n); }
  static V16 dot(V16 acc, X x, W w) { return vdot_f32_bf16(acc, x, w); }
};

// acc[m][j] = the 16 lanes of the K reduction of x row xr[m] with w row wr[j] (zeroed,
// then accumulated in increasing k). When PF != 0, pf[j] are w rows further ahead in the
// stream: their cache lines are prefetched at the same column into L2 (prefetcht1: on the
// 2-core EPYC this beat prefetcht0, which thrashes L1 with a whole block ahead, and no
// prefetch), which keeps more DRAM reads in flight than the hardware prefetcher does on
// 4 KiB rows (it stops at page boundaries). Always inlined, so the accumulators stay in
// registers.
template <class P, int MT, int NT, bool PF>
__attribute__((always_inline)) inline void block_acc(const typename P::XE* const* xr, const typename P::WE* const* wr,
                                                     const typename P::WE* const* pf, int64_t K, V16 (&acc)[MT][NT]) {
  constexpr int kLinesPerStep = P::kStep * int(sizeof(typename P::WE)) / 64;
#pragma GCC unroll 8
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 16
    for (int j = 0; j < NT; ++j) acc[m][j] = vzero();
  int64_t k = 0;
  for (; k + P::kStep <= K; k += P::kStep) {
    if constexpr (PF) {
#pragma GCC unroll 16
      for (int j = 0; j < NT; ++j)
        for (int l = 0; l < kLinesPerStep; ++l)
          _mm_prefetch(reinterpret_cast<const char*>(pf[j] + k) + 64 * l, _MM_HINT_T1);
    }
    typename P::X xv[MT];
#pragma GCC unroll 8
    for (int m = 0; m < MT; ++m) xv[m] = P::load_x(xr[m] + k);
#pragma GCC unroll 16
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
#pragma GCC unroll 16
    for (int j = 0; j < NT; ++j) {
      const typename P::W wv = P::load_w_tail(wr[j] + k, rem);
#pragma GCC unroll 8
      for (int m = 0; m < MT; ++m) acc[m][j] = P::dot(acc[m][j], xv[m], wv);
    }
  }
}

// out[m * NT + j] = full K reduction of x row xr[m] with w row wr[j].
template <class P, int MT, int NT, bool PF>
inline void block_dot(const typename P::XE* const* xr, const typename P::WE* const* wr,
                      const typename P::WE* const* pf, int64_t K, float* out) {
  V16 acc[MT][NT];
  block_acc<P, MT, NT, PF>(xr, wr, pf, K, acc);
#pragma GCC unroll 8
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 16
    for (int j = 0; j < NT; ++j) out[m * NT + j] = vhsum(acc[m][j]);
}

// The pairwise tree over a call's leaf sums, built as the leaves arrive: a stack of
// complete subtrees where two of equal size merge at once ((b0 + b1), then (b2 + b3) and
// ((b0 + b1) + (b2 + b3)), ...), and what is left at the end merges from the top down.
// That is exactly tree_combine's order (pairs, then pairs of pairs, a leftover block
// joining at the level where it finds a partner) for any count, without keeping every
// leaf. Each entry holds B sums (one register block); additions are elementwise in fp32.
template <int B>
struct LeafTree {
  static constexpr int kDepth = 8;  // enough for kMaxLeaves = 64: at most log2(64) + 1 entries
  alignas(64) float sum[kDepth][B];
  int size[kDepth];
  int depth = 0;

  float* next() { return sum[depth]; }
  void push() {
    size[depth++] = 1;
    while (depth >= 2 && size[depth - 1] == size[depth - 2]) merge();
  }
  void merge() {
    float* a = sum[depth - 2];
    const float* b = sum[depth - 1];
    if constexpr (B == 16) {
      vstore(a, vadd(vload(a), vload(b)));  // the compiler does not vectorize the loop below
    } else {
      for (int i = 0; i < B; ++i) a[i] = a[i] + b[i];
    }
    size[depth - 2] += size[depth - 1];
    --depth;
  }
  void finish(float* out) {
    while (depth > 1) merge();
    std::memcpy(out, sum[0], sizeof(float) * B);
  }
};

// out[m * NT + j] = pairwise tree over the a.leaves blocks of K of each block's reduction
// (block_acc over a.kl columns, then the fixed horizontal sum). A full 4 x 4 block reduces
// its 16 accumulators with vreduce16 (the same additions as 16 vhsum calls, transposed), so
// a short leaf does not pay 16 separate horizontal sums.
template <class P, int MT, int NT, bool PF>
void block_dot_leaves(const LinearArgs& a, const typename P::XE* const* xr, const typename P::WE* const* wr,
                      const typename P::WE* const* pf, float* out) {
  constexpr int B = MT * NT;
  LeafTree<B> tree;
  const typename P::XE* xl[MT];
  const typename P::WE* wl[NT];
  const typename P::WE* pl[NT];
  for (int l = 0; l < a.leaves; ++l) {
    for (int m = 0; m < MT; ++m) xl[m] = xr[m] + l * a.x_leaf;
    for (int j = 0; j < NT; ++j) {
      wl[j] = wr[j] + l * a.kl;
      pl[j] = pf[j] + l * a.kl;
    }
    V16 acc[MT][NT];
    block_acc<P, MT, NT, PF>(xl, wl, pl, a.kl, acc);
    float* part = tree.next();
    if constexpr (B == 16) {
      vstore(part, vreduce16(&acc[0][0]));
    } else {
      for (int m = 0; m < MT; ++m)
        for (int j = 0; j < NT; ++j) part[m * NT + j] = vhsum(acc[m][j]);
    }
    tree.push();
  }
  tree.finish(out);
}

inline float bias_at(const LinearArgs& a, int64_t n) {
  return a.bias ? load_as_f32(a.bias, a.bias_t, size_t(n)) : 0.f;
}

inline void store_y(const LinearArgs& a, int64_t t, int64_t n, float v) {
  if (a.bias) v += bias_at(a, n);
  store_from_f32(a.y, a.y_t, size_t(t * a.ldy + n), v);
}

// y rows [t0, t0 + MT) x columns [n, n + NT). Prefetches the next NT rows of w (clipped
// to a.pf_end) when `prefetch`.
template <class P, int MT, int NT>
void do_block(const LinearArgs& a, int64_t t0, int64_t n, bool prefetch) {
  using XE = typename P::XE;
  using WE = typename P::WE;
  const XE* x = static_cast<const XE*>(a.x);
  const WE* w = static_cast<const WE*>(a.w);
  const XE* xr[MT];
  const WE* wr[NT];
  const WE* pf[NT];
  for (int m = 0; m < MT; ++m) xr[m] = x + (t0 + m) * a.ldx;
  for (int j = 0; j < NT; ++j) {
    wr[j] = w + (n + j) * a.ldw;
    pf[j] = w + std::min(n + NT + j, a.pf_end - 1) * a.ldw;
  }
  float out[MT * NT];
  if (a.leaves > 1) {
    if (prefetch)
      block_dot_leaves<P, MT, NT, true>(a, xr, wr, pf, out);
    else
      block_dot_leaves<P, MT, NT, false>(a, xr, wr, pf, out);
  } else if (prefetch) {
    block_dot<P, MT, NT, true>(xr, wr, pf, a.K, out);
  } else {
    block_dot<P, MT, NT, false>(xr, wr, pf, a.K, out);
  }
  for (int m = 0; m < MT; ++m)
    for (int j = 0; j < NT; ++j) store_y(a, t0 + m, n + j, out[m * NT + j]);
}

template <class P, int NT>
void do_block_m(const LinearArgs& a, int64_t t0, int64_t mt, int64_t n, bool prefetch) {
  switch (mt) {
    case 4: if constexpr (kMT >= 4) do_block<P, 4, NT>(a, t0, n, prefetch); break;
    case 3: if constexpr (kMT >= 3) do_block<P, 3, NT>(a, t0, n, prefetch); break;
    case 2: if constexpr (kMT >= 2) do_block<P, 2, NT>(a, t0, n, prefetch); break;
    default: do_block<P, 1, NT>(a, t0, n, prefetch); break;
  }
}

// Rows [tb, te) x columns [nb, ne), column blocks outermost: each block of NT w rows is
// streamed from memory once and reused from L1 for every row block of x.
template <class P, int NT>
void n_major(const LinearArgs& a, int64_t tb, int64_t te, int64_t nb, int64_t ne) {
  int64_t n = nb;
  for (; n + NT <= ne; n += NT)
    for (int64_t t = tb; t < te; t += kMT) do_block_m<P, NT>(a, t, std::min<int64_t>(kMT, te - t), n, t == tb);
  for (; n < ne; ++n)
    for (int64_t t = tb; t < te; t += kMT) do_block_m<P, 1>(a, t, std::min<int64_t>(kMT, te - t), n, t == tb);
}

template <class P>
void linear_tiles(const LinearArgs& a, int64_t n0, int64_t n1) {
  const int64_t xrow = std::max<int64_t>(1, a.ldx * int64_t(sizeof(typename P::XE)));
  const int64_t wrow = std::max<int64_t>(1, a.K * int64_t(sizeof(typename P::WE)));
  if (a.T == 1) {  // decode: one x row against many w rows at once
    n_major<P, kNT1>(a, 0, 1, n0, n1);
    return;
  }
  if (a.T * xrow <= kXTileBytes) {  // small batch: x stays cached, w streamed once
    n_major<P, kNT>(a, 0, a.T, n0, n1);
    return;
  }
  const int64_t tc = std::max<int64_t>(kMT, kXTileBytes / xrow / kMT * kMT);
  const int64_t nc = std::max<int64_t>(kNT, kWTileBytes / wrow / kNT * kNT);
  for (int64_t tt = 0; tt < a.T; tt += tc) {
    const int64_t te = std::min(a.T, tt + tc);
    for (int64_t nn = n0; nn < n1; nn += nc) {
      const int64_t ne = std::min(n1, nn + nc);
      for (int64_t t = tt; t < te; t += kMT) n_major<P, kNT>(a, t, std::min(te, t + kMT), nn, ne);
    }
  }
}

void linear_impl(const LinearArgs& a, int64_t n0, int64_t n1) {
  if (a.w_t == DType::kF32)
    linear_tiles<F32>(a, n0, n1);
  else if (a.x_t == DType::kF32)
    linear_tiles<MixF32Bf16>(a, n0, n1);
  else
    linear_tiles<Bf16>(a, n0, n1);
}

}  // namespace
}  // namespace sparrow::cpu
