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
#include <algorithm>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8, kUnroll = 4;
constexpr int64_t kOneRowMaxN = 16384;

__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    f[2 * e] = __uint_as_float(w[e] << 16);
    f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
  }
}

// Persistent: about as many blocks as fit on the GPU at once; warp w takes row groups
// (kRowsPerWarp rows) w, w + W, ... (W = all warps), and walks each group's chunks in
// batches of kUnroll, the next batch (of this group or the next) loaded before the current
// one is used, so loads stay in flight without a gap between rows. The first two batches
// are loaded before waiting for the previous kernel (PDL): weights are never written by a
// kernel, x is the previous kernel's output.
template <int T, int kRowsPerWarp>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(GemvParams p) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int chunks = int(p.K / 8);
  const int64_t groups = (p.N + kRowsPerWarp - 1) / kRowsPerWarp, stride = int64_t(gridDim.x) * kWarps;
  struct Pos {
    int64_t g;
    int c0;
  };
  const auto advance = [&](Pos q) {
    q.c0 += 32 * kUnroll;
    if (q.c0 - lane >= chunks) q = {q.g + stride, lane};
    return q;
  };
  const auto load = [&](Pos q, uint4 (&buf)[kUnroll][kRowsPerWarp]) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t n = q.g * kRowsPerWarp + r < p.N ? q.g * kRowsPerWarp + r : p.N - 1;  // a missing last row re-reads a valid one
      const uint4* row = reinterpret_cast<const uint4*>(p.w + n * p.ldw);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (q.c0 + 32 * u < chunks) buf[u][r] = __ldg(row + q.c0 + 32 * u);
    }
  };
  Pos cur{int64_t(blockIdx.x) * kWarps + warp, lane};
  uint4 a[kUnroll][kRowsPerWarp], b[kUnroll][kRowsPerWarp];
  Pos nxt = advance(cur);
  if (cur.g < groups) {
    load(cur, a);
    if (nxt.g < groups) load(nxt, b);
  }
  pdl_wait();
  pdl_launch_dependents();
  if (cur.g >= groups) return;
  float acc[kRowsPerWarp][T];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.f;
  for (;;) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = cur.c0 + 32 * u;
      if (c >= chunks) break;
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xf[8];
        unpack8(__ldg(reinterpret_cast<const uint4*>(p.x + t * p.ldx) + c), xf);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          float wf[8];
          unpack8(a[u][r], wf);
          float d = 0.f;
#pragma unroll
          for (int e = 0; e < 8; ++e) d = fmaf(xf[e], wf[e], d);
          acc[r][t] += d;
        }
      }
    }
    if (nxt.g != cur.g) {  // this group's rows are complete
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t n = cur.g * kRowsPerWarp + r;
#pragma unroll
        for (int t = 0; t < T; ++t) {
          const float v = warp_sum(acc[r][t]);
          acc[r][t] = 0.f;
          if (lane == 0 && n < p.N) {
            const float bias = p.bias ? load_f(p.bias, p.bias_t, n) : 0.f;
            store_f(p.y, p.y_t, int64_t(t) * p.ldy + n, v + bias);
          }
        }
      }
      if (nxt.g >= groups) return;
    }
    cur = nxt;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) a[u][r] = b[u][r];
    nxt = advance(cur);
    if (nxt.g < groups) load(nxt, b);
  }
}

template <int T, int kRowsPerWarp>
void launch_rows(const GemvParams& p, cudaStream_t s) {
  static int resident = 0;  // blocks of this instantiation that fit on the GPU at once
  if (resident == 0) {
    int dev = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_kernel<T, kRowsPerWarp>, kWarps * 32, 0);
    resident = std::max(1, sms * std::max(1, per_sm));
  }
  const int64_t groups = (p.N + kRowsPerWarp - 1) / kRowsPerWarp;
  const int64_t blocks = std::min<int64_t>(resident, (groups + kWarps - 1) / kWarps);
  launch_pdl(gemv_kernel<T, kRowsPerWarp>, dim3(unsigned(blocks)), dim3(kWarps * 32), 0, s, p);
}

template <int T>
void launch(const GemvParams& p, cudaStream_t s) {
  if (p.N <= kOneRowMaxN) launch_rows<T, 1>(p, s);
  else launch_rows<T, 2>(p, s);
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
