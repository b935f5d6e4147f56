// Token grouping for the MoE GEMMs: a stable counting sort of the P = T*k (token, slot)
// pairs by expert in one CTA (no host round trip, graph-capturable), plus the GEMM row
// tile list. Deterministic: counts are order-free; ranks come from warp match masks and
// an in-order scan over warps, so pairs of one expert keep their index order.
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kThreads = 1024, kWarps = kThreads / 32;

__global__ void __launch_bounds__(kThreads) moe_group_kernel(MoeGroupParams p) {
  extern __shared__ int32_t sm[];
  int32_t* cnt = sm;                // [E]
  int32_t* base = sm + p.E;         // [E]
  int32_t* wcnt = sm + 2 * p.E;     // [kWarps][E]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int e = tid; e < p.E; e += kThreads) cnt[e] = 0;
  __syncthreads();
  for (int64_t i = tid; i < p.P; i += kThreads) {
    const int e = p.ids[i] - p.expert0;
    if (e >= 0 && e < p.E) atomicAdd(&cnt[e], 1);
  }
  __syncthreads();
  if (warp == 0) {
    // Exclusive scan over experts (one warp, chunks of 32) and the tile list.
    int32_t run = 0, tiles = 0;
    for (int e0 = 0; e0 < p.E; e0 += 32) {
      const int e = e0 + lane;
      const int32_t c = e < p.E ? cnt[e] : 0;
      int32_t incl = c, nt = (c + p.bm - 1) / p.bm, nt_incl = nt;
      for (int o = 1; o < 32; o <<= 1) {
        const int32_t x = __shfl_up_sync(0xffffffffu, incl, o), y = __shfl_up_sync(0xffffffffu, nt_incl, o);
        if (lane >= o) { incl += x; nt_incl += y; }
      }
      if (e < p.E) {
        const int32_t start = run + incl - c;
        base[e] = start;
        p.expert_start[e] = start;
        int32_t t = tiles + nt_incl - nt;
        for (int32_t r = start; r < start + c; r += p.bm, ++t) {
          p.tiles[3 * t] = e;
          p.tiles[3 * t + 1] = r;
          p.tiles[3 * t + 2] = min(r + p.bm, start + c);
        }
      }
      run += __shfl_sync(0xffffffffu, incl, 31);
      tiles += __shfl_sync(0xffffffffu, nt_incl, 31);
    }
    if (lane == 0) {
      p.expert_start[p.E] = run;
      *p.num_tiles = tiles;
    }
  }
  __syncthreads();
  for (int64_t c0 = 0; c0 < p.P; c0 += kThreads) {
    for (int i = tid; i < kWarps * p.E; i += kThreads) wcnt[i] = 0;
    __syncthreads();
    const int64_t i = c0 + tid;
    int e = i < p.P ? p.ids[i] - p.expert0 : -1;
    if (e >= p.E) e = -1;  // another rank's expert (e < 0 likewise)
    const unsigned mask = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(mask & ((1u << lane) - 1u));
    if (e >= 0 && rank == 0) wcnt[warp * p.E + e] = __popc(mask);
    __syncthreads();
    for (int ee = tid; ee < p.E; ee += kThreads) {
      int32_t run = base[ee];
      for (int w = 0; w < kWarps; ++w) {
        const int32_t c = wcnt[w * p.E + ee];
        wcnt[w * p.E + ee] = run;
        run += c;
      }
      base[ee] = run;
    }
    __syncthreads();
    if (e >= 0) p.pair_of_row[wcnt[warp * p.E + e] + rank] = int32_t(i);
    __syncthreads();
  }
}

}  // namespace

int32_t moe_max_tiles(int64_t P, int32_t E, int32_t bm) {
  // sum_e ceil(n_e / bm) <= floor(P / bm) + (number of non-empty experts)
  return int32_t(P / bm + (P < E ? P : E));
}

void moe_group(const MoeGroupParams& p, cudaStream_t s) {
  const size_t smem = size_t(2 + kWarps) * size_t(p.E) * sizeof(int32_t);
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured)) {
    cudaFuncSetAttribute(moe_group_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
  }
  moe_group_kernel<<<1, kThreads, smem, s>>>(p);
}

}  // namespace sparrow::cuda::k
