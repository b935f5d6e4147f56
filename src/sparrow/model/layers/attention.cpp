#include "sparrow/model/layers/attention.h"

#include <cmath>
#include <cstring>

namespace sparrow {
namespace {

// Copies token rows of k/v [T, Hkv, D] into their KV slots.
void write_kv(const Tensor& src, const Tensor& cache, const std::vector<int32_t>& slots) {
  const size_t row_bytes = size_t(src.size(1) * src.size(2)) * dtype_size(src.dtype());
  for (size_t t = 0; t < slots.size(); ++t) std::memcpy(cache.row_ptr(slots[t]), src.row_ptr(int64_t(t)), row_bytes);
}

}  // namespace

Attention::Attention(const ModelConfig& c, int64_t layer, WeightStore& w, const std::string& p)
    : layer_(layer), heads_(c.num_heads), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim),
      eps_(float(c.rms_norm_eps)), scale_(1.0f / std::sqrt(float(c.head_dim))), qk_norm_(c.qk_norm) {
  const int64_t h = c.hidden_size, q_dim = heads_ * head_dim_, kv_dim = kv_heads_ * head_dim_;
  wq_ = w.matrix(p + ".q_proj.weight", {q_dim, h});
  wk_ = w.matrix(p + ".k_proj.weight", {kv_dim, h});
  wv_ = w.matrix(p + ".v_proj.weight", {kv_dim, h});
  wo_ = w.matrix(p + ".o_proj.weight", {h, q_dim});
  if (c.attention_bias) {
    bq_ = w.vector_f32(p + ".q_proj.bias", q_dim);
    bk_ = w.vector_f32(p + ".k_proj.bias", kv_dim);
    bv_ = w.vector_f32(p + ".v_proj.bias", kv_dim);
  }
  if (c.o_proj_bias) bo_ = w.vector_f32(p + ".o_proj.bias", h);
  switch (qk_norm_) {
    case QKNorm::kNone: break;
    case QKNorm::kPerHead:
      q_norm_ = w.vector_f32(p + ".q_norm.weight", head_dim_);
      k_norm_ = w.vector_f32(p + ".k_norm.weight", head_dim_);
      break;
    case QKNorm::kProjection:
      q_norm_ = w.vector_f32(p + ".q_norm.weight", q_dim);
      k_norm_ = w.vector_f32(p + ".k_norm.weight", kv_dim);
      break;
  }
  // inv_freq[i] = theta^(-2i/D), computed in double and rounded once to fp32.
  for (int64_t i = 0; i < head_dim_ / 2; ++i)
    inv_freq_.push_back(float(1.0 / std::pow(c.rope_theta, double(2 * i) / double(head_dim_))));
}

void Attention::forward(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  const int64_t t = x.size(0);
  const DType dt = x.dtype();
  Arena& ws = ctx.workspace;
  const Tensor q = ws.alloc(dt, {t, heads_, head_dim_});
  const Tensor k = ws.alloc(dt, {t, kv_heads_, head_dim_});
  const Tensor v = ws.alloc(dt, {t, kv_heads_, head_dim_});
  const Tensor q2 = q.view({t, heads_ * head_dim_}), k2 = k.view({t, kv_heads_ * head_dim_});
  ops::linear(x, wq_, bq_.data() ? &bq_ : nullptr, q2);
  ops::linear(x, wk_, bk_.data() ? &bk_ : nullptr, k2);
  ops::linear(x, wv_, bv_.data() ? &bv_ : nullptr, v.view({t, kv_heads_ * head_dim_}));
  switch (qk_norm_) {
    case QKNorm::kNone: break;
    case QKNorm::kPerHead:
      ops::head_rms_norm(q, q_norm_, eps_);
      ops::head_rms_norm(k, k_norm_, eps_);
      break;
    case QKNorm::kProjection:
      ops::rms_norm(q2, q_norm_, eps_, q2);
      ops::rms_norm(k2, k_norm_, eps_, k2);
      break;
  }
  const int32_t* pos = ctx.batch.positions.data();
  ops::rope(q, pos, inv_freq_.data());
  ops::rope(k, pos, inv_freq_.data());
  const Tensor k_cache = ctx.kv.k(layer_), v_cache = ctx.kv.v(layer_);
  write_kv(k, k_cache, ctx.batch.out_cache_loc);
  write_kv(v, v_cache, ctx.batch.out_cache_loc);
  const Tensor attn = ws.alloc(dt, {t, heads_, head_dim_});
  ops::paged_attention(q, k_cache, v_cache, ctx.attention, scale_, attn);
  ops::linear(attn.view({t, heads_ * head_dim_}), wo_, bo_.data() ? &bo_ : nullptr, out);
}

}  // namespace sparrow
