// Skinny bf16 GEMM for decode-sized batches (T <= kGemvMaxRows): y[T, N] = x[T, K] w[N, K]^T
// (+ bias), fp32 accumulation. At these sizes a linear is a pass over the weights: both
// kernels here stream them with 16-byte loads, many in flight per lane.
//
// One token (gemv_row_kernel): warp per weight row (two for the vocabulary-sized
// projections); lane l takes the 8-element chunks l, l + 32, ... of K in increasing order
// (each chunk's 8 products in order), then the lanes' partials meet in a fixed butterfly.
//
// 2-8 tokens (gemv_mma_kernel): SIMT dot products are bound by their instructions from 2
// tokens up (1 TB/s at 8), so the tokens are the N = 8 side of mma.sync m16n8k16 and 16
// weight rows its M side. Block = 8 warps over kTiles x 16 weight rows; K in 32-wide
// chunks, chunk c taken by warp c % 8 (in increasing order within a warp). Lane (g = lane /
// 4, q = lane % 4) loads 16 bytes of a chunk, elements [8q, 8q + 8), of weight rows g and
// g + 8 of each tile and of token g's x row. An mma's 16 k slots are a permutation of the
// chunk's elements that makes those loads its fragments: slots (2q, 2q + 1, 2q + 8, 2q + 9)
// are elements (8q, ..., 8q + 3) in the first mma and (8q + 4, ..., 8q + 7) in the second,
// for the A (weight) and B (x) operands alike, so each product pairs the same k. Per
// output: a warp's chunks accumulate in increasing order on the tensor core (its order
// inside an mma), the 8 warps' partials add in warp order, then the bias, one rounding.
// At one token this kernel was 4% slower end to end (its split-K reduction and fewer,
// larger blocks), hence two kernels.
//
// Tokens are independent in both: batch invariant among 2-8 tokens (the one-token kernel's
// order differs). Neither is the fixed GEMM's order, so deterministic mode keeps that for
// every T (ops_cuda.cpp).
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8, kChunk = 32, kLoadsInFlight = 16;  // weight loads per lane per round
constexpr int64_t kOneTileMaxN = 16384;  // more rows: 2 tiles per block (x re-read half as often)

constexpr int kRowUnroll = 8;
constexpr int64_t kOneRowMaxN = 16384;

template <int kRowsPerWarp>
__global__ void __launch_bounds__(kWarps * 32) gemv_row_kernel(GemvParams p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = (int64_t(blockIdx.x) * kWarps + warp) * kRowsPerWarp;
  // A warp past the last row has nothing to do; its block's other warps wait (PDL needs a
  // wait in every block, not every warp: see common.cuh), and there is no block barrier.
  if (n0 >= p.N) return;
  const int chunks = int(p.K / 8);
  float acc[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = 0.f;
  const uint4* wrow[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t n = n0 + r < p.N ? n0 + r : p.N - 1;  // a missing last row re-reads a valid one
    wrow[r] = reinterpret_cast<const uint4*>(p.w + n * p.ldw);
  }
  // The first kRowUnroll chunks of the weight rows are loaded before waiting for the
  // previous kernel (PDL): weights are never written by a kernel, x is its output.
  uint4 wv[kRowUnroll][kRowsPerWarp];
  int c0 = lane;
  const auto load = [&](int base) {
#pragma unroll
    for (int u = 0; u < kRowUnroll; ++u)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        if (base + 32 * u < chunks) wv[u][r] = ldg_stream(wrow[r] + base + 32 * u);
  };
  load(c0);
  pdl_wait();
  pdl_launch_dependents();
  for (;;) {
#pragma unroll
    for (int u = 0; u < kRowUnroll; ++u) {
      const int c = c0 + 32 * u;
      if (c >= chunks) break;
      float xf[8];
      unpack8(__ldg(reinterpret_cast<const uint4*>(p.x) + c), xf);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        float wf[8];
        unpack8(wv[u][r], wf);
        float d = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) d = fmaf(xf[e], wf[e], d);
        acc[r] += d;
      }
    }
    c0 += 32 * kRowUnroll;
    if (c0 >= chunks) break;
    load(c0);
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t n = n0 + r;
    const float v = warp_sum(acc[r]);
    if (lane == 0 && n < p.N) {
      const float b = p.bias ? load_f(p.bias, p.bias_t, n) : 0.f;
      store_f(p.y, p.y_t, n, v + b);
    }
  }
}

template <int kTiles>
__global__ void __launch_bounds__(kWarps * 32) gemv_mma_kernel(GemvParams p) {
  constexpr int U = kLoadsInFlight / (2 * kTiles);  // chunks per round
  __shared__ float part[kWarps][kTiles][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
  const int64_t n0 = int64_t(blockIdx.x) * 16 * kTiles;
  const int nc = int((p.K + kChunk - 1) / kChunk);
  const uint16_t* wr[kTiles][2];
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = n0 + 16 * i + g + 8 * h;
      wr[i][h] = p.w + (n < p.N ? n : p.N - 1) * p.ldw + 8 * q;  // a missing row re-reads a valid one
    }
  const bool has_x = g < p.T;
  const uint16_t* xr = p.x + (has_x ? g : 0) * p.ldx + 8 * q;
  const auto in_k = [&](int c) { return c < nc && int64_t(c) * kChunk + 8 * q < p.K; };
  const uint4 zero = make_uint4(0, 0, 0, 0);
  float acc[kTiles][4];
#pragma unroll
  for (int i = 0; i < kTiles; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  uint4 wv[U][kTiles][2];
  const auto load_w = [&](int c_first) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c_first + kWarps * u;
      const bool ok = in_k(c);
#pragma unroll
      for (int i = 0; i < kTiles; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wv[u][i][h] = ok ? ldg_stream(reinterpret_cast<const uint4*>(wr[i][h] + int64_t(c) * kChunk)) : zero;
    }
  };
  // The first round of weights is loaded before waiting for the previous kernel (PDL):
  // weights are never written by a kernel, x is the previous kernel's output.
  int c0 = warp;
  load_w(c0);
  pdl_wait();
  pdl_launch_dependents();
  for (; c0 < nc; c0 += kWarps * U) {
    uint4 xv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + kWarps * u;
      xv[u] = has_x && in_k(c) ? __ldg(reinterpret_cast<const uint4*>(xr + int64_t(c) * kChunk)) : zero;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + kWarps * u >= nc) break;  // warp-uniform
      const uint32_t b0[2] = {xv[u].x, xv[u].y}, b1[2] = {xv[u].z, xv[u].w};
#pragma unroll
      for (int i = 0; i < kTiles; ++i) {
        const uint4 lo = wv[u][i][0], hi = wv[u][i][1];  // rows g and g + 8
        const uint32_t a0[4] = {lo.x, hi.x, lo.y, hi.y}, a1[4] = {lo.z, hi.z, lo.w, hi.w};
        mma_bf16(acc[i], a0, b0);
        mma_bf16(acc[i], a1, b1);
      }
    }
    if (c0 + kWarps * U < nc) load_w(c0 + kWarps * U);
  }
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) part[warp][i][r][lane] = acc[i][r];
  __syncthreads();
  // Output (tile i, fragment register r, lane): row 16 i + g + 8 (r / 2), token 2 q + r % 2.
  for (int e = threadIdx.x; e < kTiles * 4 * 32; e += kWarps * 32) {
    const int i = e / 128, r = (e / 32) % 4, l = e % 32;
    const int64_t n = n0 + 16 * i + (l >> 2) + 8 * (r >> 1), t = 2 * (l & 3) + (r & 1);
    if (t >= p.T || n >= p.N) continue;
    float v = part[0][i][r][l];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v += part[w][i][r][l];
    if (p.bias) v += load_f(p.bias, p.bias_t, n);
    store_f(p.y, p.y_t, t * p.ldy + n, v);
  }
}

template <int kTiles>
void launch_mma(const GemvParams& p, cudaStream_t s) {
  const int64_t rows = 16 * kTiles;
  launch_pdl(gemv_mma_kernel<kTiles>, dim3(unsigned((p.N + rows - 1) / rows)), dim3(kWarps * 32), 0, s, p);
}

}  // namespace

void gemv_bf16(const GemvParams& p, cudaStream_t s) {
  if (p.T == 0 || p.N == 0) return;
  if (p.T == 1) {
    if (p.N <= kOneRowMaxN)
      launch_pdl(gemv_row_kernel<1>, dim3(unsigned((p.N + kWarps - 1) / kWarps)), dim3(kWarps * 32), 0, s, p);
    else
      launch_pdl(gemv_row_kernel<2>, dim3(unsigned((p.N + 2 * kWarps - 1) / (2 * kWarps))), dim3(kWarps * 32), 0, s, p);
    return;
  }
  if (p.N <= kOneTileMaxN) launch_mma<1>(p, s);
  else launch_mma<2>(p, s);
}

}  // namespace sparrow::cuda::k
