// The K-split half of tensor parallelism (o_proj, down projections): y = x . w^T where this
// rank holds only a slice of K, so y is a partial sum that the LayerCommunicator finishes.
//
// In deterministic mode the slice is `leaves` equal blocks of the model's fixed leaf tree:
// each block is reduced as the ordinary linear kernel reduces a row of that length, and the
// blocks are combined pairwise ((b0 + b1) + (b2 + b3)), all inside one kernel pass
// (ops::linear_leaves). The rank's result is then exactly a subtree of the single-rank
// reduction, and the tree-ordered all-reduce completes the same tree.
#pragma once

#include "sparrow/core/arena.h"
#include "sparrow/core/tensor.h"

namespace sparrow {

// x [T, K_local], w [N, K_local] (possibly strided views), y f32 [T, N]. `ws`: scratch of
// the GPU leaf tree (ops::linear_leaves).
void row_parallel_linear(const Tensor& x, const Tensor& w, int leaves, const Tensor& y, Arena* ws = nullptr);

// In-place pairwise tree over `count` fp32 blocks of `n` floats at blocks[0..count): leaves
// (i, i+1) first, then pairs of pairs. The result is left in block 0.
void tree_combine(float* const* blocks, int count, size_t n);

}  // namespace sparrow
