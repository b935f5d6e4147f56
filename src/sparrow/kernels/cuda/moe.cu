// Token grouping for the MoE GEMMs: a stable counting sort of the P = T*k (token, slot)
// pairs by expert in one CTA (no host round trip, graph-capturable), plus the GEMM row
// tile list. Deterministic: each warp owns a contiguous run of pairs; counts per (warp,
// expert), an in-order scan over warps, and ranks from warp match masks, so pairs of one
// expert keep their index order. (It used to walk the pairs in block-wide chunks of 1024
// with four barriers and a serial scan each: 53 us at 16384 pairs, docs/gpu.md.)
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kThreads = 1024, kWarps = kThreads / 32;
// Up to this many pairs, the kernel first copies ids into shared memory (every load in
// flight at once): both passes read them.
constexpr int64_t kSmemIdsMax = 32768;
constexpr size_t kGroupSmemMax = 200 * 1024;

static_assert(kWarps == 32, "the per-expert scan over warps is one warp's shuffle scan");

// Shared memory: cnt [E], base [E], wcnt [kWarps][E + 1] (padded: the scan reads a column),
// then the staged ids [P] when they fit.
__host__ __device__ inline size_t group_smem_words(int32_t E) { return 2 * size_t(E) + kWarps * (size_t(E) + 1); }
__host__ __device__ inline bool stage_ids(int64_t P, int32_t E) {
  return P <= kSmemIdsMax && (group_smem_words(E) + size_t(P)) * sizeof(int32_t) <= kGroupSmemMax;
}
size_t group_smem_bytes(int64_t P, int32_t E) {
  return (group_smem_words(E) + (stage_ids(P, E) ? size_t(P) : 0)) * sizeof(int32_t);
}

__global__ void __launch_bounds__(kThreads) moe_group_kernel(MoeGroupParams p) {
  extern __shared__ int32_t sm[];
  int32_t* cnt = sm;                // [E]
  int32_t* base = sm + p.E;         // [E]
  int32_t* wcnt = sm + 2 * p.E;     // [kWarps][wst]: per warp and expert, count then offset
  const int wst = p.E + 1;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  pdl_wait();  // ids come from the router's top-k
  pdl_launch_dependents();
  const int32_t* ids = p.ids;
  if (stage_ids(p.P, p.E)) {
    int32_t* staged = sm + group_smem_words(p.E);  // [P]
#pragma unroll 8
    for (int64_t i = tid; i < p.P; i += kThreads) staged[i] = p.ids[i];
    ids = staged;
  }
  for (int i = tid; i < kWarps * wst; i += kThreads) wcnt[i] = 0;
  __syncthreads();
  // Warp w owns the contiguous pairs [s0, s1). Pairs of other ranks' experts get e = -1 and
  // are left out.
  const int64_t seg = (p.P + kWarps - 1) / kWarps, s0 = min(p.P, warp * seg), s1 = min(p.P, s0 + seg);
  auto expert_of = [&](int64_t i) {
    const int e = i < s1 ? ids[i] - p.expert0 : -1;
    return e < p.E ? e : -1;
  };
  // Pass 1: this warp's count per expert (shared-memory atomics on the warp's own row:
  // counts are order-free; 40 -> 25 us at 16384 pairs against match masks here).
  for (int64_t i = s0 + lane; i < s1; i += 32) {
    const int e = expert_of(i);
    if (e >= 0) atomicAdd(&wcnt[warp * wst + e], 1);
  }
  __syncthreads();
  // Per expert, the exclusive scan of its counts over the warps in warp order (one warp
  // per expert, lane = warp index); the total is the expert's count.
  for (int ee = warp; ee < p.E; ee += kWarps) {
    const int32_t c = wcnt[lane * wst + ee];
    int32_t incl = c;
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t x = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += x;
    }
    wcnt[lane * wst + ee] = incl - c;
    if (lane == 31) cnt[ee] = incl;
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
  // Pass 2: the warp walks its pairs 32 at a time; lanes of one step that share an expert
  // find each other with a match mask (the lowest lane of the group is its leader). Row =
  // expert start + earlier warps' pairs of that expert + this warp's earlier steps' + the
  // rank among this step's lanes, so index order is kept.
  for (int64_t i0 = s0; i0 < s1; i0 += 32) {
    const int e = expert_of(i0 + lane);
    const unsigned mask = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(mask & ((1u << lane) - 1u));
    if (e >= 0) p.pair_of_row[base[e] + wcnt[warp * wst + e] + rank] = int32_t(i0 + lane);
    __syncwarp();
    if (e >= 0 && rank == 0) wcnt[warp * wst + e] += __popc(mask);
    __syncwarp();
  }
}

}  // namespace

int32_t moe_max_tiles(int64_t P, int32_t E, int32_t bm) {
  // sum_e ceil(n_e / bm) <= floor(P / bm) + (number of non-empty experts)
  return int32_t(P / bm + (P < E ? P : E));
}

void moe_group(const MoeGroupParams& p, cudaStream_t s) {
  const size_t smem = group_smem_bytes(p.P, p.E);
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured)) {
    cudaFuncSetAttribute(moe_group_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kGroupSmemMax));
  }
  launch_pdl(moe_group_kernel, dim3(1), dim3(kThreads), smem, s, p);
}

}  // namespace sparrow::cuda::k
