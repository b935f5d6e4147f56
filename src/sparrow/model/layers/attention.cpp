#include "sparrow/model/layers/attention.h"

#include <cmath>
#include <cstring>

#include "sparrow/model/layers/row_parallel.h"

namespace sparrow {
namespace {

// Columns [c0, c0 + n) of every row of src into dst (contiguous [T, n]).
void copy_cols(const Tensor& src, int64_t c0, const Tensor& dst) {
  const size_t es = dtype_size(src.dtype()), n = size_t(dst.size(1));
  for (int64_t t = 0; t < src.size(0); ++t)
    std::memcpy(dst.row_ptr(t), static_cast<const char*>(src.row_ptr(t)) + size_t(c0) * es, n * es);
}

}  // namespace

Attention::Attention(const ModelConfig& c, int64_t layer, WeightStore& w, const std::string& p, const RankContext& rank)
    : layer_(layer), head_dim_(c.head_dim), eps_(float(c.rms_norm_eps)), scale_(1.0f / std::sqrt(float(c.head_dim))),
      qk_norm_(c.qk_norm) {
  const int64_t h = c.hidden_size, d = c.head_dim;
  tp_ = rank.mesh.attn_tp;
  const int r = rank.attn_tp_rank();
  heads_ = c.num_heads / tp_;
  leaves_ = local_leaves(rank, tp_);
  // KV heads: split when there are at least as many as ranks, else each rank keeps the one
  // its query heads read.
  int64_t kv0;
  if (c.num_kv_heads >= tp_) {
    kv_heads_ = c.num_kv_heads / tp_;
    kv0 = kv_heads_ * r;
  } else {
    kv_heads_ = 1;
    kv0 = (heads_ * r) / (c.num_heads / c.num_kv_heads);
  }
  const Range q_rows{heads_ * r * d, heads_ * (r + 1) * d}, kv_rows{kv0 * d, (kv0 + kv_heads_) * d};
  q_col0_ = q_rows.begin;
  kv_col0_ = kv_rows.begin;
  // OLMoE normalizes the whole q / k projection: with TP a rank computes them whole.
  full_qk_ = qk_norm_ == QKNorm::kProjection && tp_ > 1;
  const Range wq_rows = full_qk_ ? Range::all() : q_rows, wk_rows = full_qk_ ? Range::all() : kv_rows;
  const int64_t q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d;
  if (w.device() == Device::kCPU) {
    wq_ = w.matrix(p + ".q_proj.weight", {q_dim, h}, wq_rows);
    wk_ = w.matrix(p + ".k_proj.weight", {kv_dim, h}, wk_rows);
    wv_ = w.matrix(p + ".v_proj.weight", {kv_dim, h}, kv_rows);
    if (c.attention_bias) {
      bq_ = w.vector_f32(p + ".q_proj.bias", q_dim, wq_rows);
      bk_ = w.vector_f32(p + ".k_proj.bias", kv_dim, wk_rows);
      bv_ = w.vector_f32(p + ".v_proj.bias", kv_dim, kv_rows);
    }
  } else {
    const int64_t nq = heads_ * d, nk = kv_heads_ * d;
    wqkv_ = w.alloc(w.compute_dtype(), {nq + 2 * nk, h});
    w.matrix_into(p + ".q_proj.weight", {q_dim, h}, q_rows, Range::all(), wqkv_.slice_rows(0, nq));
    w.matrix_into(p + ".k_proj.weight", {kv_dim, h}, kv_rows, Range::all(), wqkv_.slice_rows(nq, nq + nk));
    w.matrix_into(p + ".v_proj.weight", {kv_dim, h}, kv_rows, Range::all(), wqkv_.slice_rows(nq + nk, nq + 2 * nk));
    if (c.attention_bias) {
      bqkv_ = w.alloc(DType::kF32, {nq + 2 * nk});
      w.matrix_into(p + ".q_proj.bias", {q_dim}, q_rows, Range::all(), bqkv_.slice_rows(0, nq));
      w.matrix_into(p + ".k_proj.bias", {kv_dim}, kv_rows, Range::all(), bqkv_.slice_rows(nq, nq + nk));
      w.matrix_into(p + ".v_proj.bias", {kv_dim}, kv_rows, Range::all(), bqkv_.slice_rows(nq + nk, nq + 2 * nk));
    }
  }
  wo_ = w.matrix(p + ".o_proj.weight", {h, q_dim}, Range::all(), q_rows);
  if (c.o_proj_bias) bo_ = w.vector_f32(p + ".o_proj.bias", h);
  switch (qk_norm_) {
    case QKNorm::kNone: break;
    case QKNorm::kPerHead:
      q_norm_ = w.vector_f32(p + ".q_norm.weight", d);
      k_norm_ = w.vector_f32(p + ".k_norm.weight", d);
      break;
    case QKNorm::kProjection:
      q_norm_ = w.vector_f32(p + ".q_norm.weight", q_dim, full_qk_ ? Range::all() : q_rows);
      k_norm_ = w.vector_f32(p + ".k_norm.weight", kv_dim, full_qk_ ? Range::all() : kv_rows);
      break;
  }
  // inv_freq[i] = theta^(-2i/D), computed in double and rounded once to fp32.
  std::vector<float> inv_freq;
  for (int64_t i = 0; i < d / 2; ++i) inv_freq.push_back(float(1.0 / std::pow(c.rope_theta, double(2 * i) / double(d))));
  inv_freq_ = w.constant_f32(inv_freq);
  SPARROW_REQUIRE(w.device() == Device::kCPU || !full_qk_, "OLMoE-style q/k norm under attention TP runs on the CPU only");
}

void Attention::forward_device(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  const int64_t t = x.size(0), nq = heads_ * head_dim_, nk = kv_heads_ * head_dim_;
  if (t == 0) return;  // an idle DP group: its attention-TP peers are idle too
  Arena& ws = ctx.workspace;
  const Tensor qkv = ws.alloc(x.dtype(), {t, nq + 2 * nk});
  ops::linear(x, wqkv_, bqkv_.data() ? &bqkv_ : nullptr, qkv);
  const Tensor q = ws.alloc(x.dtype(), {t, heads_, head_dim_});
  const ops::HeadNorm norm = qk_norm_ == QKNorm::kPerHead      ? ops::HeadNorm::kPerHead
                             : qk_norm_ == QKNorm::kProjection ? ops::HeadNorm::kProjection
                                                               : ops::HeadNorm::kNone;
  ops::attention_prep(qkv, heads_, kv_heads_, norm, q_norm_.data() ? &q_norm_ : nullptr,
                      k_norm_.data() ? &k_norm_ : nullptr, eps_, ctx.arrays.positions, inv_freq_.data_as<float>(),
                      ctx.arrays.cache_loc, q, ctx.kv.k(layer_), ctx.kv.v(layer_));
  const Tensor attn = ws.alloc(x.dtype(), {t, heads_, head_dim_});
  ops::AttentionBatch geometry = ctx.arrays.attention;
  if (t == geometry.batch) {  // one query per sequence (decode): each context's splits run in parallel
    const size_t n = ops::paged_attention_scratch_floats(x.device(), t, heads_, head_dim_, geometry.max_context);
    if (n > 0) geometry.scratch = ws.alloc_array<float>(n);
  }
  ops::paged_attention(q, ctx.kv.k(layer_), ctx.kv.v(layer_), geometry, scale_, attn);
  // o_proj with its bias in the GEMM epilogue; under attention TP a partial sum over the
  // heads, the bias added by rank 0 alone so the all-reduce counts it once. Deterministic
  // mode: this rank's leaves of the fixed tree (ops::linear_leaves), which the rank-order
  // all-reduce completes into the single-rank bits.
  const bool bias = bo_.data() && ctx.comm.ctx().attn_tp_rank() == 0;
  if (ctx.comm.ctx().deterministic) {
    SPARROW_REQUIRE(!bo_.data(), "deterministic inference on the GPU: an o_proj bias is not supported yet");
    ops::linear_leaves(attn.view({t, nq}), wo_, leaves_, out, &ws);
  } else {
    ops::linear(attn.view({t, nq}), wo_, bias ? &bo_ : nullptr, out);
  }
  if (tp_ > 1) ctx.comm.reduce_attn_tp({out, Layout::kAttnTPFull, PartialOver::kAttnTP});
}

void Attention::forward(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  if (x.device() != Device::kCPU) return forward_device(x, ctx, out);
  const int64_t t = x.size(0);
  const DType dt = x.dtype();
  Arena& ws = ctx.workspace;
  const Tensor q = ws.alloc(dt, {t, heads_, head_dim_});
  const Tensor k = ws.alloc(dt, {t, kv_heads_, head_dim_});
  const Tensor v = ws.alloc(dt, {t, kv_heads_, head_dim_});
  const Tensor q2 = q.view({t, heads_ * head_dim_}), k2 = k.view({t, kv_heads_ * head_dim_});
  if (full_qk_) {
    const Tensor qf = ws.alloc(dt, {t, wq_.size(0)}), kf = ws.alloc(dt, {t, wk_.size(0)});
    ops::linear(x, wq_, bq_.data() ? &bq_ : nullptr, qf);
    ops::linear(x, wk_, bk_.data() ? &bk_ : nullptr, kf);
    ops::rms_norm(qf, q_norm_, eps_, qf);
    ops::rms_norm(kf, k_norm_, eps_, kf);
    copy_cols(qf, q_col0_, q2);
    copy_cols(kf, kv_col0_, k2);
  } else {
    ops::linear(x, wq_, bq_.data() ? &bq_ : nullptr, q2);
    ops::linear(x, wk_, bk_.data() ? &bk_ : nullptr, k2);
  }
  ops::linear(x, wv_, bv_.data() ? &bv_ : nullptr, v.view({t, kv_heads_ * head_dim_}));
  switch (qk_norm_) {
    case QKNorm::kNone: break;
    case QKNorm::kPerHead:
      ops::head_rms_norm(q, q_norm_, eps_);
      ops::head_rms_norm(k, k_norm_, eps_);
      break;
    case QKNorm::kProjection:
      if (!full_qk_) {
        ops::rms_norm(q2, q_norm_, eps_, q2);
        ops::rms_norm(k2, k_norm_, eps_, k2);
      }
      break;
  }
  ops::rope(q, ctx.arrays.positions, inv_freq_.data_as<float>());
  ops::rope(k, ctx.arrays.positions, inv_freq_.data_as<float>());
  const Tensor k_cache = ctx.kv.k(layer_), v_cache = ctx.kv.v(layer_);
  ops::scatter_rows(k, ctx.arrays.cache_loc, k_cache);
  ops::scatter_rows(v, ctx.arrays.cache_loc, v_cache);
  const Tensor attn = ws.alloc(dt, {t, heads_, head_dim_});
  ops::paged_attention(q, k_cache, v_cache, ctx.arrays.attention, scale_, attn);
  row_parallel_linear(attn.view({t, heads_ * head_dim_}), wo_, leaves_, out, &ws);
  Hidden h{out, Layout::kAttnTPFull, tp_ > 1 ? PartialOver::kAttnTP : PartialOver::kNone};
  if (tp_ > 1) h = ctx.comm.reduce_attn_tp(h);
  if (bo_.data()) {
    float* o = out.data_as<float>();
    const float* b = bo_.data_as<float>();
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < out.size(1); ++j) o[i * out.size(1) + j] += b[j];
  }
}

}  // namespace sparrow
