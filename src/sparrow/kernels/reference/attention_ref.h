// Reference (oracle) paged attention: plain loops in double precision.
#pragma once

#include "sparrow/core/tensor.h"
#include "sparrow/kernels/ops.h"

namespace sparrow::ref {

// Same contract as ops::paged_attention (arguments assumed validated): for each query,
// scores over all its keys in double, an exact-max softmax in double, the weighted sum of
// values in double, rounded once to out's dtype.
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const ops::AttentionBatch& batch, float scale, const Tensor& out);

}  // namespace sparrow::ref
