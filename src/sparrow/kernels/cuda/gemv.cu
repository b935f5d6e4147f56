// Skinny bf16 GEMM for decode-sized batches (T <= kGemvMaxRows): y[T, N] = x[T, K] w[N, K]^T
// (+ bias), fp32 accumulation. At these sizes a linear is a pass over the weights; this
// kernel streams them with 16-byte loads, several in flight per lane, and does the T dot
// products of each weight row while it holds it.
//
// Warp per R weight rows (1 for projections of up to kOneRowMaxN outputs, so that they still
// spread over every SM; 2 for the vocabulary-sized ones); lane l takes the 8-element chunks c = l, l + 32, ...
// of K in increasing order (each chunk's 8 products summed in order), then the lanes'
// partials meet in a fixed butterfly. The order depends on K alone, not on T: batch
// invariant among T <= kGemvMaxRows (but not equal to the tensor-core kernels' order, so
// deterministic mode keeps the fixed GEMM for every T; see ops_cuda.cpp).
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8, kUnroll = 8;
constexpr int64_t kOneRowMaxN = 16384;

template <int T, int kRowsPerWarp>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(GemvParams p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = (int64_t(blockIdx.x) * kWarps + warp) * kRowsPerWarp;
  // A warp past the last row has nothing to do; its block's other warps wait (PDL needs a
  // wait in every block, not every warp: see common.cuh), and there is no block barrier.
  if (n0 >= p.N) return;
  const int chunks = int(p.K / 8);
  float acc[kRowsPerWarp][T];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.f;
  const uint4* wrow[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t n = n0 + r < p.N ? n0 + r : p.N - 1;  // a missing last row re-reads a valid one
    wrow[r] = reinterpret_cast<const uint4*>(p.w + n * p.ldw);
  }
  // The first kUnroll chunks of the weight rows are loaded before waiting for the previous
  // kernel (PDL): weights are never written by a kernel, x is the previous kernel's output.
  uint4 wv[kUnroll][kRowsPerWarp];
  int c0 = lane;
  const auto load = [&](int base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        if (base + 32 * u < chunks) wv[u][r] = ldg_stream(wrow[r] + base + 32 * u);
  };
  load(c0);
  pdl_wait();
  pdl_launch_dependents();
  for (;;) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      if (c >= chunks) break;
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xf[8];
        unpack8(__ldg(reinterpret_cast<const uint4*>(p.x + t * p.ldx) + c), xf);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          float wf[8];
          unpack8(wv[u][r], wf);
          float d = 0.f;
#pragma unroll
          for (int e = 0; e < 8; ++e) d = fmaf(xf[e], wf[e], d);
          acc[r][t] += d;
        }
      }
    }
    c0 += 32 * kUnroll;
    if (c0 >= chunks) break;
    load(c0);
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t n = n0 + r;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float v = warp_sum(acc[r][t]);
      if (lane == 0 && n < p.N) {
        const float b = p.bias ? load_f(p.bias, p.bias_t, n) : 0.f;
        store_f(p.y, p.y_t, int64_t(t) * p.ldy + n, v + b);
      }
    }
  }
}

template <int T>
void launch(const GemvParams& p, cudaStream_t s) {
  if (p.N <= kOneRowMaxN) {
    launch_pdl(gemv_kernel<T, 1>, dim3(unsigned((p.N + kWarps - 1) / kWarps)), dim3(kWarps * 32), 0, s, p);
  } else {
    launch_pdl(gemv_kernel<T, 2>, dim3(unsigned((p.N + 2 * kWarps - 1) / (2 * kWarps))), dim3(kWarps * 32), 0, s, p);
  }
}

}  // namespace

void gemv_bf16(const GemvParams& p, cudaStream_t s) {
  if (p.T == 0 || p.N == 0) return;
  switch (p.T) {
    case 1: return launch<1>(p, s);
    case 2: return launch<2>(p, s);
    case 3: return launch<3>(p, s);
    case 4: return launch<4>(p, s);
    case 5: return launch<5>(p, s);
    case 6: return launch<6>(p, s);
    case 7: return launch<7>(p, s);
    default: return launch<8>(p, s);
  }
}

}  // namespace sparrow::cuda::k
