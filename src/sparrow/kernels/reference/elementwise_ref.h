// Plain reference loops for the elementwise ops of ops.h: the oracle that tests hold the
// optimized kernels to. Simple, serial, double-precision statistics where it matters.
#pragma once

#include "sparrow/core/tensor.h"
#include "sparrow/kernels/ops.h"

namespace sparrow::ref {

void embedding(const Tensor& table, const int32_t* ids, const Tensor& out);
void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y);
void head_rms_norm(const Tensor& x, const Tensor& w, float eps);
void rope(const Tensor& x, const int32_t* positions, const float* inv_freq);
void attention_prep(const Tensor& qkv, int64_t heads, int64_t kv_heads, ops::HeadNorm norm, const Tensor* q_norm,
                    const Tensor* k_norm, float eps, const int32_t* positions, const float* inv_freq,
                    const int32_t* cache_loc, const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache);
void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& y);
void route_topk_softmax(const Tensor& logits, int k, bool renormalize, int32_t* ids, float* weights);
void log_softmax(const Tensor& logits, const Tensor& out);

}  // namespace sparrow::ref
