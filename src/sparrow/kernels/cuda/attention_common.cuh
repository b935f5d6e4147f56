// Pieces the two paged-attention files share (attention.cu: fp32 SIMT kernels and the
// split merge; attention_mma.cu: the tensor-core kernels). Device code only.
#pragma once

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {

// (query, head) pairs of one query's group a decode-split block takes (both paths).
constexpr int kMaxSplitGroup = 32;

// Row `row` -> its sequence b and absolute position (b = -1: a padding row).
__device__ __forceinline__ int find_seq(const AttentionParams& p, int64_t row, int64_t& pos) {
  if (row < p.batch && p.q_offsets[row] == row && p.extend_lens[row] == 1) {  // decode: row r is sequence r
    pos = p.seq_lens[row] - 1;
    return int(row);
  }
  for (int i = 0; i < p.batch; ++i) {
    const int64_t off = p.q_offsets[i];
    if (row >= off && row < off + p.extend_lens[i]) {
      pos = p.seq_lens[i] - p.extend_lens[i] + (row - off);
      return i;
    }
  }
  return -1;
}

// The sequence (-1: none) and query rows [row0, row0 + nq) at positions pos0.. that this
// block takes: decode-split shape (kSplit), one query row per blockIdx.x; extend shape,
// blockIdx.x counts chunks of `queries` rows, sequence after sequence. Both kernel paths.
template <bool kSplit>
__device__ __forceinline__ int block_queries(const AttentionParams& p, int64_t queries, int64_t& row0, int64_t& nq,
                                             int64_t& pos0) {
  if (kSplit) {
    row0 = blockIdx.x;
    nq = 1;
    return find_seq(p, row0, pos0);
  }
  int64_t c = blockIdx.x;
  for (int i = 0; i < p.batch; ++i) {
    const int64_t chunks = (p.extend_lens[i] + queries - 1) / queries;
    if (c < chunks) {
      row0 = p.q_offsets[i] + c * queries;
      nq = min(queries, int64_t(p.extend_lens[i]) - c * queries);
      pos0 = p.seq_lens[i] - p.extend_lens[i] + c * queries;
      return i;
    }
    c -= chunks;
  }
  return -1;
}

template <int DPL>  // head dims per lane: D <= 32 * DPL
struct Partial {
  float m, l;
  float acc[DPL];
};

template <int DPL>
__device__ __forceinline__ void partial_init(Partial<DPL>& s) {
  s.m = -INFINITY;
  s.l = 0.f;
#pragma unroll
  for (int i = 0; i < DPL; ++i) s.acc[i] = 0.f;
}

// run = run (+) part, softmax-merged (run may be empty: m = -inf gives a = 0 exactly).
template <int DPL>
__device__ __forceinline__ void merge_partial(Partial<DPL>& run, float pm, float pl, const float* pacc) {
  const float m_new = fmaxf(run.m, pm);
  const float a = expf(run.m - m_new), b = expf(pm - m_new);
  run.l = fmaf(run.l, a, __fmul_rn(pl, b));
#pragma unroll
  for (int i = 0; i < DPL; ++i) run.acc[i] = fmaf(run.acc[i], a, __fmul_rn(pacc[i], b));
  run.m = m_new;
}

// Folds the split partials of (row, head h) in increasing split order and stores the
// result (one warp; `lane` its lane). Partials are read past L1: with merge_if_last they
// were written by other blocks of the running kernel.
template <int DPL>
__device__ __forceinline__ void merge_splits(const AttentionParams& p, int64_t row, int64_t h, int64_t pos, int lane) {
  const int D = int(p.D);
  Partial<DPL> run;
  partial_init(run);
  for (int64_t s = 0; s <= pos / p.split; ++s) {
    const float* o = p.partials + ((row * p.Hq + h) * p.n_splits + s) * (p.D + 2);
    float acc[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[i] = lane + 32 * i < D ? __ldcg(o + 2 + lane + 32 * i) : 0.f;
    merge_partial(run, __ldcg(o), __ldcg(o + 1), acc);
  }
  const int64_t qo = (row * p.Hq + h) * D;
#pragma unroll
  for (int i = 0; i < DPL; ++i)
    if (lane + 32 * i < D) store_f(p.out, p.t, qo + lane + 32 * i, run.acc[i] / run.l);
}

// End of a decode-split block of (row, KV head g) at position pos, after its partials are
// stored (every thread of the block calls it): counts the block in, and the last of the
// row's pos / split + 1 split blocks merges the row's `group` heads (warp per head) and
// re-zeroes the counter for the next launch. The classic threadfence reduction: each
// thread's stores are fenced before the count; the last block fences before it reads.
template <int DPL>
__device__ __forceinline__ void merge_if_last(const AttentionParams& p, int64_t row, int64_t g, int64_t group, int64_t pos) {
  __shared__ int s_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t* c = p.merge_counters + row * p.Hkv + g;
    s_last = atomicAdd(c, 1) == int32_t(pos / p.split);
    if (s_last) *c = 0;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const int warp = int(threadIdx.x >> 5), warps = int(blockDim.x >> 5);
  for (int64_t j = warp; j < group; j += warps) merge_splits<DPL>(p, row, g * group + j, pos, int(threadIdx.x & 31));
}

// The decode-split shape's second kernel: folds each (row, head)'s split partials in
// increasing split order (attention.cu).
void attention_merge(const AttentionParams& p, cudaStream_t stream);

// Whether the tensor-core kernels take this batch's shape (bf16, D 64 or 128): a property
// of the model, so all its steps take the same path (attention_mma.cu).
bool attention_mma_path(const AttentionParams& p);
void paged_attention_mma(const AttentionParams& p, cudaStream_t stream);

}  // namespace sparrow::cuda::k
