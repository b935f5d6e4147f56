// Pieces the two paged-attention files share (attention.cu: fp32 SIMT kernels and the
// split merge; attention_mma.cu: the tensor-core kernels). Device code only.
#pragma once

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
// blockIdx.x counts chunks of `queries` rows, sequence after sequence, each sequence's
// last (longest-context) chunk first when `heavy_first` (the causal work of a chunk grows
// with its position, so the blocks launched last are the short ones and the tail is short).
template <bool kSplit>
__device__ __forceinline__ int block_queries(const AttentionParams& p, int64_t queries, int64_t& row0, int64_t& nq,
                                             int64_t& pos0, bool heavy_first = false) {
  if (kSplit) {
    row0 = blockIdx.x;
    nq = 1;
    return find_seq(p, row0, pos0);
  }
  int64_t c = blockIdx.x;
  for (int i = 0; i < p.batch; ++i) {
    const int64_t chunks = (p.extend_lens[i] + queries - 1) / queries;
    if (c < chunks) {
      if (heavy_first) c = chunks - 1 - c;
      row0 = p.q_offsets[i] + c * queries;
      nq = min(queries, int64_t(p.extend_lens[i]) - c * queries);
      pos0 = p.seq_lens[i] - p.extend_lens[i] + c * queries;
      return i;
    }
    c -= chunks;
  }
  return -1;
}

// The tensor-core kernels' row reductions: an mma row's values are spread over the 4
// threads of a quad, which meet in a fixed butterfly (xor 1, then xor 2).
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
// The query positions of the two mma rows (g and g + 8) a thread holds of a warp whose 16
// rows start at (query, head) pair `first_pair`: pair pr is query pr / group of the block,
// at position pos0 + pr / group; -1 for a row past the block's pairs.
__device__ __forceinline__ void mma_row_positions(int first_pair, int gid, int pairs, int64_t group, int64_t pos0,
                                                  int64_t (&my_pos)[2]) {
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int pr = first_pair + gid + 8 * e;
    my_pos[e] = pr < pairs ? pos0 + pr / group : -1;
  }
}

// One tile's step of a row's online-softmax running max: m becomes max(m, the row's tile
// max) and the returned alpha rescales the state kept so far (1 while m is still -inf).
// kExp2: scores in log2 units (attention_flash.cu), else natural (attention_mma.cu).
template <bool kExp2>
__device__ __forceinline__ float online_max_step(float& m, float thread_max) {
  const float m_new = fmaxf(m, quad_max(thread_max));
  const float alpha = m_new == -INFINITY ? 1.f : kExp2 ? exp2f(m - m_new) : expf(m - m_new);
  m = m_new;
  return alpha;
}

// Positions per split of a decode-split block's sequence whose context is `len` positions:
// the fixed split, or the context cut into dyn_splits splits of whole tiles.
__device__ __forceinline__ int64_t seq_split(const AttentionParams& p, int64_t len) {
  if (p.dyn_splits == 0) return p.split;
  const int64_t tiles = (len + kAttnTile - 1) / kAttnTile;
  return kAttnTile * ((tiles + p.dyn_splits - 1) / p.dyn_splits);
}
inline unsigned decode_grid_splits(const AttentionParams& p) { return unsigned(p.dyn_splits ? p.dyn_splits : p.n_splits); }

// The decode-split shape's second kernel: folds each (row, head)'s split partials in
// increasing split order (attention.cu).
void attention_merge(const AttentionParams& p, cudaStream_t stream);

// Whether the tensor-core kernels take this batch's shape (bf16, D 64 or 128): a property
// of the model, so all its steps take the same path (attention_mma.cu).
bool attention_mma_path(const AttentionParams& p);
void paged_attention_mma(const AttentionParams& p, cudaStream_t stream);

}  // namespace sparrow::cuda::k
