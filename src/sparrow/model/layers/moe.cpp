#include "sparrow/model/layers/moe.h"

#include <cmath>
#include <cstring>

#include "sparrow/kernels/ops.h"

namespace sparrow {

SparseMoe::SparseMoe(const ModelConfig& c, WeightStore& w, const std::string& p, const MoeNames& n)
    : hidden_(c.hidden_size), top_k_(c.top_k), renormalize_(c.norm_topk_prob),
      router_(w.matrix(p + "." + n.router + ".weight", {c.num_experts, c.hidden_size})) {
  experts_.reserve(size_t(c.num_experts));
  for (int64_t e = 0; e < c.num_experts; ++e)
    experts_.emplace_back(w, p + "." + n.experts + "." + std::to_string(e), c.hidden_size,
                          c.moe_intermediate_size, n.expert_proj);
  if (c.shared_expert_intermediate_size > 0) {
    shared_.emplace(w, p + "." + n.shared_expert, c.hidden_size, c.shared_expert_intermediate_size);
    shared_gate_ = w.matrix(p + "." + n.shared_expert_gate + ".weight", {1, c.hidden_size});
  }
}

void SparseMoe::forward(const Tensor& x, Arena& ws, const Tensor& out) const {
  const int64_t t = x.size(0), k = top_k_, h = hidden_, e_count = int64_t(experts_.size());
  const size_t row_bytes = size_t(h) * dtype_size(x.dtype());

  const Tensor logits = ws.alloc(DType::kF32, {t, e_count});
  ops::linear(x, router_, nullptr, logits);
  int32_t* ids = ws.alloc_array<int32_t>(size_t(t * k));
  float* weights = ws.alloc_array<float>(size_t(t * k));
  ops::route_topk_softmax(logits, int(k), renormalize_, ids, weights);

  // Group (token, slot) pairs by expert with a counting sort; within an expert, pairs keep
  // token order, so the grouping is a pure function of the routing.
  int64_t* start = ws.alloc_array<int64_t>(size_t(e_count + 1));
  std::memset(start, 0, sizeof(int64_t) * size_t(e_count + 1));
  for (int64_t i = 0; i < t * k; ++i) ++start[ids[i] + 1];
  for (int64_t e = 0; e < e_count; ++e) start[e + 1] += start[e];
  int64_t* fill = ws.alloc_array<int64_t>(size_t(e_count));
  std::memcpy(fill, start, sizeof(int64_t) * size_t(e_count));
  int64_t* pair_of_row = ws.alloc_array<int64_t>(size_t(t * k));  // grouped row -> token*k+slot
  for (int64_t i = 0; i < t * k; ++i) pair_of_row[fill[ids[i]]++] = i;

  // Each (token, slot) output lands in slot_out[token*k + slot], fp32, already weighted.
  const Tensor slot_out = ws.alloc(DType::kF32, {t * k, h});
  const Tensor gathered = ws.alloc(x.dtype(), {t * k, h});
  const Tensor expert_out = ws.alloc(DType::kF32, {t * k, h});
  for (int64_t r = 0; r < t * k; ++r) std::memcpy(gathered.row_ptr(r), x.row_ptr(pair_of_row[r] / k), row_bytes);
  for (int64_t e = 0; e < e_count; ++e) {
    const int64_t b = start[e], n = start[e + 1] - start[e];
    if (n == 0) continue;
    const size_t mark = ws.used();
    experts_[size_t(e)].forward(gathered.slice_rows(b, b + n), ws, expert_out.slice_rows(b, b + n));
    ws.rewind(mark);
  }
  for (int64_t r = 0; r < t * k; ++r) {
    const int64_t pair = pair_of_row[r];
    const float wgt = weights[pair];
    const float* src = static_cast<const float*>(expert_out.row_ptr(r));
    float* dst = static_cast<float*>(slot_out.row_ptr(pair));
    for (int64_t i = 0; i < h; ++i) dst[i] = src[i] * wgt;
  }

  // Shared expert as slot K: sigmoid(gate(x)) * mlp(x).
  Tensor shared_out, shared_logit;
  if (shared_) {
    shared_out = ws.alloc(DType::kF32, {t, h});
    shared_->forward(x, ws, shared_out);
    shared_logit = ws.alloc(DType::kF32, {t, 1});
    ops::linear(x, shared_gate_, nullptr, shared_logit);
  }

  float* acc = ws.alloc_array<float>(size_t(h));
  for (int64_t tok = 0; tok < t; ++tok) {
    std::memcpy(acc, slot_out.row_ptr(tok * k), sizeof(float) * size_t(h));
    for (int64_t s = 1; s < k; ++s) {
      const float* src = static_cast<const float*>(slot_out.row_ptr(tok * k + s));
      for (int64_t i = 0; i < h; ++i) acc[i] += src[i];
    }
    if (shared_) {
      const float g = 1.0f / (1.0f + std::exp(-shared_logit.data_as<float>()[tok]));
      const float* src = static_cast<const float*>(shared_out.row_ptr(tok));
      for (int64_t i = 0; i < h; ++i) acc[i] += g * src[i];
    }
    convert(acc, DType::kF32, out.row_ptr(tok), out.dtype(), size_t(h));
  }
}

}  // namespace sparrow
