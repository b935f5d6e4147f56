// Reference (oracle) GEMM: the plain loop the optimized kernels are tested against.
#pragma once

#include "sparrow/core/tensor.h"

namespace sparrow::ref {

// y[t, n] = sum_k x[t, k] * w[n, k] (+ bias[n]), accumulated in double in increasing k
// order, rounded once to y's dtype. Arguments as ops::linear (x, y rank 2; rows may be
// strided); assumed already validated.
void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

// ops::linear_leaves' oracle: each of the `leaves` K blocks summed in double and rounded to
// fp32 (what ref::linear gives a block), the block sums combined in fp32 by the pairwise
// tree (split at the largest power of two below the count: ((b0 + b1) + (b2 + b3)) + b4),
// rounded once to y's dtype.
void linear_leaves(const Tensor& x, const Tensor& w, int leaves, const Tensor& y);

}  // namespace sparrow::ref
