// Plain reference loops for the fused MoE ops of ops.h (moe_experts, moe_combine): one
// (token, slot) pair at a time, fp32 dot products in increasing K order. This is the CPU
// implementation of those ops and the oracle the GPU grouped GEMMs are tested against.
#pragma once

#include "sparrow/core/tensor.h"

namespace sparrow::ref {

void moe_experts(const Tensor& x, const int32_t* ids, const float* weights, int k, const Tensor& w13,
                 const Tensor& w2, const Tensor& slot_out, int64_t expert0 = 0);
void moe_combine(const Tensor& slot_out, int k, const Tensor* shared_out, const Tensor* shared_logit,
                 const Tensor& out);

}  // namespace sparrow::ref
