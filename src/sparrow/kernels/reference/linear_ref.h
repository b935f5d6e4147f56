// Reference (oracle) GEMM: the plain loop the optimized kernels are tested against.
#pragma once

#include "sparrow/core/tensor.h"

namespace sparrow::ref {

// y[t, n] = sum_k x[t, k] * w[n, k] (+ bias[n]), accumulated in double in increasing k
// order, rounded once to y's dtype. Arguments as ops::linear (x, y rank 2; rows may be
// strided); assumed already validated.
void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

}  // namespace sparrow::ref
