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

// The decode-split shape's second kernel: folds each (row, head)'s split partials in
// increasing split order (attention.cu).
void attention_merge(const AttentionParams& p, cudaStream_t stream);

// Whether the tensor-core kernels take this batch's shape (bf16, D 64 or 128): a property
// of the model, so all its steps take the same path (attention_mma.cu).
bool attention_mma_path(const AttentionParams& p);
void paged_attention_mma(const AttentionParams& p, cudaStream_t stream);

}  // namespace sparrow::cuda::k
