#include "sparrow/model/layers/moe.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "sparrow/kernels/ops.h"
#include "sparrow/model/layers/row_parallel.h"

namespace sparrow {

SparseMoe::SparseMoe(const ModelConfig& c, WeightStore& w, const std::string& p, const MoeNames& n, const RankContext& rank)
    : hidden_(c.hidden_size), top_k_(c.top_k), num_experts_(c.num_experts), renormalize_(c.norm_topk_prob),
      router_(w.matrix(p + "." + n.router + ".weight", {c.num_experts, c.hidden_size})) {
  const Mesh& m = rank.mesh;
  moe_tp_ = m.moe_tp;
  attn_tp_ = m.attn_tp;
  experts_local_ = c.num_experts / m.moe_ep;
  expert0_ = experts_local_ * rank.moe_ep_rank();
  expert_leaves_ = local_leaves(rank, moe_tp_);
  shared_leaves_ = local_leaves(rank, attn_tp_);
  const Range slice = shard_range(c.moe_intermediate_size, moe_tp_, rank.moe_tp_rank());
  if (w.device() == Device::kCUDA) {
    SPARROW_REQUIRE(w.compute_dtype() == DType::kBF16, "the GPU MoE kernels are bf16: use --dtype bfloat16");
    const int64_t h = c.hidden_size, inter = slice.size();
    w13_ = w.alloc(DType::kBF16, {experts_local_, 2 * inter, h});
    w2_ = w.alloc(DType::kBF16, {experts_local_, h, inter});
    for (int64_t e = 0; e < experts_local_; ++e) {
      const std::string q = p + "." + n.experts + "." + std::to_string(expert0_ + e) + ".";
      const Tensor w13e = w13_.slice_rows(e, e + 1).view({2 * inter, h});
      w.matrix_into(q + n.expert_proj.gate + ".weight", {c.moe_intermediate_size, h}, slice, Range::all(), w13e.slice_rows(0, inter));
      w.matrix_into(q + n.expert_proj.up + ".weight", {c.moe_intermediate_size, h}, slice, Range::all(), w13e.slice_rows(inter, 2 * inter));
      w.matrix_into(q + n.expert_proj.down + ".weight", {h, c.moe_intermediate_size}, Range::all(), slice,
                    w2_.slice_rows(e, e + 1).view({h, inter}));
    }
  } else {
    experts_.reserve(size_t(experts_local_));
    for (int64_t e = expert0_; e < expert0_ + experts_local_; ++e)
      experts_.emplace_back(w, p + "." + n.experts + "." + std::to_string(e), c.hidden_size, c.moe_intermediate_size,
                            n.expert_proj, slice);
  }
  if (c.shared_expert_intermediate_size > 0) {
    shared_.emplace(w, p + "." + n.shared_expert, c.hidden_size, c.shared_expert_intermediate_size, Mlp::Names{},
                    shard_range(c.shared_expert_intermediate_size, attn_tp_, rank.attn_tp_rank()));
    shared_gate_ = w.matrix(p + "." + n.shared_expert_gate + ".weight", {1, c.hidden_size});
  }
}

SparseMoe::Routed SparseMoe::route(const Tensor& x, Arena& ws) const {
  const int64_t t = x.size(0);
  const Tensor logits = ws.alloc(DType::kF32, {t, num_experts_});
  ops::linear(x, router_, nullptr, logits);
  Routed r{ws.alloc_array<int32_t>(size_t(t * top_k_)), ws.alloc_array<float>(size_t(t * top_k_))};
  if (t > 0) ops::route_topk_softmax(logits, int(top_k_), renormalize_, r.ids, r.weights);
  return r;
}

SparseMoe::SharedOut SparseMoe::shared_expert(const Tensor& x, const StepContext& ctx) const {
  Arena& ws = ctx.workspace;
  const int64_t t = x.size(0);
  SharedOut o{ws.alloc(DType::kF32, {t, hidden_}), ws.alloc(DType::kF32, {t, 1})};
  shared_->forward(x, ws, o.value, shared_leaves_);
  if (attn_tp_ > 1) ctx.comm.all_reduce_attn_tp(o.value.data_as<float>(), size_t(t * hidden_));
  ops::linear(x, shared_gate_, nullptr, o.gate_logit);
  return o;
}

SparseMoe::ExpertRows SparseMoe::expert_rows(const Tensor& x, const int32_t* ids, int64_t slots, Arena& ws,
                                             const std::vector<int64_t>& pairs) const {
  // Group the pairs by owned expert (counting sort: within an expert, pairs keep their
  // order, so the grouping is a pure function of the routing).
  const size_t row_bytes = size_t(hidden_) * dtype_size(x.dtype());
  std::vector<int64_t> start(size_t(experts_local_ + 1), 0);
  for (int64_t pr : pairs) ++start[size_t(ids[pr] - expert0_ + 1)];
  for (int64_t e = 0; e < experts_local_; ++e) start[size_t(e + 1)] += start[size_t(e)];
  std::vector<int64_t> fill(start.begin(), start.end() - 1), order(pairs.size());
  for (int64_t pr : pairs) order[size_t(fill[size_t(ids[pr] - expert0_)]++)] = pr;
  const int64_t n_pairs = int64_t(pairs.size());
  const Tensor gathered = ws.alloc(x.dtype(), {n_pairs, hidden_});
  const Tensor out = ws.alloc(DType::kF32, {n_pairs, hidden_});
  for (int64_t i = 0; i < n_pairs; ++i) std::memcpy(gathered.row_ptr(i), x.row_ptr(order[size_t(i)] / slots), row_bytes);
  for (int64_t e = 0; e < experts_local_; ++e) {
    const int64_t b = start[size_t(e)], n = start[size_t(e + 1)] - b;
    if (n == 0) continue;
    const size_t mark = ws.used();
    experts_[size_t(e)].forward(gathered.slice_rows(b, b + n), ws, out.slice_rows(b, b + n), expert_leaves_);
    ws.rewind(mark);
  }
  return {out, std::move(order)};
}

void SparseMoe::run_experts(const Tensor& x, const int32_t* ids, int64_t slots, Arena& ws, const Tensor& values,
                            const std::vector<int64_t>& pairs) const {
  const ExpertRows rows = expert_rows(x, ids, slots, ws, pairs);
  for (size_t i = 0; i < rows.pair.size(); ++i)
    std::memcpy(values.row_ptr(rows.pair[i]), rows.values.row_ptr(int64_t(i)), sizeof(float) * size_t(hidden_));
}

void SparseMoe::combine(const float* const* slot, const float* weights, int64_t tokens, const float* shared,
                        float* out) const {
  const int64_t h = hidden_, k = top_k_;
  for (int64_t t = 0; t < tokens; ++t) {
    float* acc = out + t * h;
    const float* v0 = slot[t * k];
    for (int64_t i = 0; i < h; ++i) acc[i] = weights[t * k] * v0[i];
    for (int64_t s = 1; s < k; ++s) {
      const float w = weights[t * k + s];
      const float* v = slot[t * k + s];
      for (int64_t i = 0; i < h; ++i) acc[i] += w * v[i];
    }
    if (shared)
      for (int64_t i = 0; i < h; ++i) acc[i] += shared[t * h + i];
  }
}

void SparseMoe::combine(const Tensor& values, const float* weights, int64_t tokens, const float* shared, float* out) const {
  std::vector<const float*> slot(size_t(tokens * top_k_));
  for (size_t i = 0; i < slot.size(); ++i) slot[i] = values.data_as<float>() + int64_t(i) * hidden_;
  combine(slot.data(), weights, tokens, shared, out);
}

void SparseMoe::forward_fused(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  if (ctx.comm.ctx().a2a == MoeA2ABackend::kAllToAll && ctx.comm.ctx().mesh.world > 1)
    return forward_alltoall_device(x, ctx, out);
  if (ctx.comm.ctx().deterministic) return forward_device_deterministic(x, ctx, out);
  if (ctx.comm.ctx().mesh.world > 1) return forward_fused_ranks(x, ctx, out);
  Arena& ws = ctx.workspace;
  const Tensor logits = ws.alloc(DType::kF32, {x.size(0), num_experts_});
  ops::linear(x, router_, nullptr, logits);
  if (!shared_) {
    ops::fused_moe(x, logits, int(top_k_), renormalize_, w13_, w2_, nullptr, nullptr, ws, out);
    return;
  }
  const SharedOut s = shared_expert(x, ctx);
  ops::fused_moe(x, logits, int(top_k_), renormalize_, w13_, w2_, &s.value, &s.gate_logit, ws, out);
}

void SparseMoe::forward_device_deterministic(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  // Every layout gives the single-GPU bits: every rank routes every token of the world
  // (Full), computes the unweighted values of the pairs its experts own as its leaves of the
  // down projection's fixed tree (-0.0 for the other pairs), and one rank-order all-reduce
  // over the world completes each value into the single-rank tree (the owners' subtree;
  // x + -0.0 == x). Each rank then weights and sums its DP group's slots in slot order,
  // plus the gated shared expert (its leaves completed over attention TP), as slot K.
  Arena& ws = ctx.workspace;
  LayerCommunicator& lc = ctx.comm;
  const int64_t t = x.size(0), h = hidden_, k = top_k_;
  const Hidden in = lc.to_moe_input({x, Layout::kAttnTPFull, PartialOver::kNone}, ws);
  const int64_t tf = in.t.size(0);
  const Routed r = route(in.t, ws);
  const Tensor values = ws.alloc(DType::kF32, {tf * k, h});
  ops::moe_expert_values(in.t, r.ids, int(k), w13_, w2_, expert_leaves_, expert0_, num_experts_, ws, values);
  if (lc.ctx().mesh.world > 1) lc.complete_slot_values(values.data_as<float>(), size_t(values.numel()));
  const int64_t off = lc.dp_offset();
  const Tensor mine = values.slice_rows(off * k, (off + t) * k);
  if (!shared_) {
    ops::moe_combine_weighted(mine, r.weights + off * k, int(k), nullptr, nullptr, out);
    return;
  }
  const SharedOut s = shared_expert(x, ctx);
  ops::moe_combine_weighted(mine, r.weights + off * k, int(k), &s.value, &s.gate_logit, out);
}

void SparseMoe::forward_alltoall_device(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  // The CPU's alltoall (forward_alltoall) with the rows on the device: this rank routes its
  // share of the DP group's tokens, sends each (token, slot) row to every MoE-TP rank of the
  // expert's group, the owners return UNWEIGHTED values (their leaves of the down
  // projection's tree in deterministic mode, the whole down projection otherwise), home sums
  // each pair's parts in MoE-TP rank order (the tree's top), weights and sums the slots in
  // slot order. The routing comes to the host once per layer to size the exchanges (so
  // these steps run without CUDA graphs).
  Arena& ws = ctx.workspace;
  LayerCommunicator& lc = ctx.comm;
  const int64_t h = hidden_, k = top_k_;
  const int world = lc.ctx().mesh.world;
  const Hidden in = lc.to_moe_input({x, Layout::kAttnTPFull, PartialOver::kNone}, ws);
  const int64_t ts = in.t.size(0), pairs = ts * k;
  const Routed r = route(in.t, ws);
  std::vector<int32_t> host_ids(static_cast<size_t>(pairs));
  if (pairs > 0) ops::copy(Tensor(host_ids.data(), DType::kI32, {pairs}), Tensor(r.ids, DType::kI32, {pairs}, Device::kCUDA));

  // Per destination (rank order): the pairs it gets; send row -> source token and the slot
  // of home's [moe_tp, pairs] parts it returns to.
  std::vector<size_t> send_rows(static_cast<size_t>(world), 0);
  std::vector<int32_t> src_token, part_row, send_ids;
  for (int d = 0; d < world; ++d)
    for (int64_t pr = 0; pr < pairs; ++pr)
      if (host_ids[size_t(pr)] / experts_local_ == d / moe_tp_) {
        src_token.push_back(int32_t(pr / k));
        part_row.push_back(int32_t((d % moe_tp_) * pairs + pr));
        send_ids.push_back(host_ids[size_t(pr)]);
        ++send_rows[size_t(d)];
      }
  const std::vector<size_t> recv_rows = lc.exchange_counts(send_rows);
  size_t n_recv = 0;
  for (size_t n : recv_rows) n_recv += n;
  const int64_t n_send = int64_t(src_token.size());
  auto upload = [&](const std::vector<int32_t>& v) {
    auto* d = ws.alloc_array<int32_t>(std::max<size_t>(v.size(), 1));
    if (!v.empty()) ops::copy(Tensor(d, DType::kI32, {int64_t(v.size())}, Device::kCUDA), Tensor(const_cast<int32_t*>(v.data()), DType::kI32, {int64_t(v.size())}));
    return d;
  };
  const int32_t* d_src = upload(src_token);
  const int32_t* d_part = upload(part_row);
  const int32_t* d_send_ids = upload(send_ids);
  auto bytes = [](const std::vector<size_t>& rows, size_t per) {
    std::vector<size_t> b;
    for (size_t n : rows) b.push_back(n * per);
    return b;
  };
  const size_t es = dtype_size(x.dtype());
  const Tensor send = ws.alloc(x.dtype(), {n_send, h}), recv = ws.alloc(x.dtype(), {int64_t(n_recv), h});
  if (n_send > 0) ops::embedding(in.t, d_src, send);  // gathers the rows of the pairs' tokens
  auto* recv_ids = ws.alloc_array<int32_t>(std::max<size_t>(n_recv, 1));
  lc.all_to_all_v(static_cast<const std::byte*>(send.data()), bytes(send_rows, size_t(h) * es),
                  static_cast<std::byte*>(recv.data()), bytes(recv_rows, size_t(h) * es));
  lc.all_to_all_v(reinterpret_cast<const std::byte*>(d_send_ids), bytes(send_rows, 4),
                  reinterpret_cast<std::byte*>(recv_ids), bytes(recv_rows, 4));
  // Owners: every received row is one pair, "routed" top-1 to its expert.
  const Tensor vals = ws.alloc(DType::kF32, {int64_t(n_recv), h});
  ops::moe_expert_values(recv, recv_ids, 1, w13_, w2_, expert_leaves_, expert0_, num_experts_, ws, vals);
  const Tensor back = ws.alloc(DType::kF32, {n_send, h});
  lc.all_to_all_v(static_cast<const std::byte*>(vals.data()), bytes(recv_rows, size_t(h) * 4),
                  static_cast<std::byte*>(back.data()), bytes(send_rows, size_t(h) * 4));
  // Home: each pair's parts (one per MoE-TP rank of its group) in rank order, then the tree.
  const Tensor parts = ws.alloc(DType::kF32, {moe_tp_ * pairs, h});
  if (n_send > 0) ops::scatter_rows(back, d_part, parts);
  const Tensor values = moe_tp_ == 1 ? parts : ws.alloc(DType::kF32, {pairs, h});
  if (moe_tp_ > 1) ops::tree_sum_blocks(parts, moe_tp_, values);
  const auto [b, e] = lc.scattered_range();
  const Tensor mine = ws.alloc(DType::kF32, {ts, h});
  if (shared_) {
    const SharedOut s = shared_expert(x, ctx);  // on the DP group's tokens: this rank's rows
    const Tensor sm = s.value.slice_rows(b, e), lm = s.gate_logit.slice_rows(b, e);
    ops::moe_combine_weighted(values, r.weights, int(k), &sm, &lm, mine);
  } else {
    ops::moe_combine_weighted(values, r.weights, int(k), nullptr, nullptr, mine);
  }
  const Hidden done = lc.from_moe_output({mine, Layout::kScattered, PartialOver::kNone}, ws);
  ops::copy(out, done.t);
}

void SparseMoe::forward_fused_ranks(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  // The `none` layout on GPU ranks: every rank routes every token of the world (Full) and
  // sums its experts' slots over its intermediate slice, a partial over the world that one
  // all-reduce completes; the shared expert (split over attention TP) is completed within
  // the DP group and added at home, as on the CPU.
  Arena& ws = ctx.workspace;
  LayerCommunicator& lc = ctx.comm;
  const int64_t t = x.size(0), h = hidden_;
  const Hidden in = lc.to_moe_input({x, Layout::kAttnTPFull, PartialOver::kNone}, ws);
  const int64_t tf = in.t.size(0);
  const Tensor logits = ws.alloc(DType::kF32, {tf, num_experts_});
  ops::linear(in.t, router_, nullptr, logits);
  // One DP group: the Full rows are this group's, so the sum lands in `out` itself.
  const Tensor partial = tf == t && !shared_ ? out : ws.alloc(DType::kF32, {tf, h});
  ops::fused_moe(in.t, logits, int(top_k_), renormalize_, w13_, w2_, nullptr, nullptr, ws, partial, expert0_);
  const Hidden done = lc.from_moe_output({partial, Layout::kFull, PartialOver::kWorld}, ws);
  if (!shared_) {
    if (done.t.data() != out.data()) ops::copy(out, done.t);
    return;
  }
  const SharedOut s = shared_expert(x, ctx);
  ops::moe_combine(done.t, 1, &s.value, &s.gate_logit, out);  // routed + sigmoid(gate) * shared
}

void SparseMoe::forward(const Tensor& x, const StepContext& ctx, const Tensor& out) const {
  if (x.device() == Device::kCUDA) return forward_fused(x, ctx, out);
  const int64_t t = x.size(0), h = hidden_;
  // Shared expert on this DP group's tokens (split over attention TP), complete and gated.
  float* shared = nullptr;
  if (shared_) {
    const SharedOut s = shared_expert(x, ctx);
    for (int64_t i = 0; i < t; ++i) {
      const float g = 1.0f / (1.0f + std::exp(-s.gate_logit.data_as<float>()[i]));
      for (int64_t j = 0; j < h; ++j) s.value.data_as<float>()[i * h + j] *= g;
    }
    shared = s.value.data_as<float>();
  }
  if (ctx.comm.ctx().a2a == MoeA2ABackend::kAllToAll) forward_alltoall(x, ctx, out, shared);
  else forward_none(x, ctx, out, shared);
}

void SparseMoe::forward_none(const Tensor& x, const StepContext& ctx, const Tensor& out, const float* shared) const {
  Arena& ws = ctx.workspace;
  LayerCommunicator& lc = ctx.comm;
  const int64_t h = hidden_, k = top_k_;
  const Hidden in = lc.to_moe_input({x, Layout::kAttnTPFull, PartialOver::kNone}, ws);
  const int64_t tf = in.t.size(0);
  const Routed r = route(in.t, ws);
  std::vector<int64_t> owned;
  for (int64_t pr = 0; pr < tf * k; ++pr)
    if (r.ids[pr] >= expert0_ && r.ids[pr] < expert0_ + experts_local_) owned.push_back(pr);
  const bool single = ctx.comm.ctx().mesh.world == 1;
  const int64_t t_dp = lc.dp_tokens(), off = lc.dp_offset();
  if (ctx.comm.ctx().deterministic && !single) {
    // Per-slot values, complete before the slot-order sum: the owning expert group's MoE-TP
    // ranks sum their partial values (the tree over that aligned block of ranks), then each
    // rank fetches the slots of its DP group's tokens that other groups own. The bits are
    // those of a world all-reduce where every non-owner contributes -0.0 (x + -0.0 == x):
    // the owners' subtree. Only owned rows are reduced, and nothing is summed across groups.
    const ExpertRows rows = expert_rows(in.t, r.ids, k, ws, owned);
    if (moe_tp_ > 1) lc.reduce_moe_tp(rows.values.data_as<float>(), size_t(rows.values.numel()));
    const std::vector<const float*> slot = lc.gather_slots(rows.values, rows.pair, r.ids, k, experts_local_);
    combine(slot.data(), r.weights + off * k, t_dp, shared, out.data_as<float>());
    return;
  }
  // Default: this rank's weighted slot sum per token (a partial over the world), completed by
  // one all-reduce.
  const Tensor values = ws.alloc(DType::kF32, {tf * k, h});
  std::memset(values.data(), 0, values.nbytes());
  run_experts(in.t, r.ids, k, ws, values, owned);
  const Tensor partial = single ? out : ws.alloc(DType::kF32, {tf, h});
  combine(values, r.weights, tf, nullptr, partial.data_as<float>());
  if (!single) {
    const Hidden done = lc.from_moe_output({partial, Layout::kFull, PartialOver::kWorld}, ws);
    std::memcpy(out.data(), done.t.data(), size_t(t_dp * h) * sizeof(float));
  }
  if (shared)
    for (int64_t i = 0; i < t_dp * h; ++i) out.data_as<float>()[i] += shared[i];
}

void SparseMoe::forward_alltoall(const Tensor& x, const StepContext& ctx, const Tensor& out, const float* shared) const {
  Arena& ws = ctx.workspace;
  LayerCommunicator& lc = ctx.comm;
  const Mesh& m = lc.ctx().mesh;
  const int64_t h = hidden_, k = top_k_;
  const int world = m.world;
  const size_t es = dtype_size(x.dtype()), row_bytes = size_t(h) * es;
  const Hidden in = lc.to_moe_input({x, Layout::kAttnTPFull, PartialOver::kNone}, ws);
  const int64_t ts = in.t.size(0);
  const Routed r = route(in.t, ws);

  // Dispatch: pair (t, s) goes to every MoE-TP rank of the expert's EP group, in rank order.
  std::vector<std::vector<int64_t>> to(static_cast<size_t>(world));  // pairs per destination
  for (int64_t pr = 0; pr < ts * k; ++pr) {
    const int group = int(r.ids[pr] / experts_local_);
    for (int j = 0; j < moe_tp_; ++j) to[size_t(group * moe_tp_ + j)].push_back(pr);
  }
  std::vector<size_t> send_rows(static_cast<size_t>(world)), recv_rows(static_cast<size_t>(world));
  for (int d = 0; d < world; ++d) send_rows[size_t(d)] = to[size_t(d)].size();
  {
    std::vector<size_t> eight(static_cast<size_t>(world), sizeof(size_t));
    lc.all_to_all_v(reinterpret_cast<const std::byte*>(send_rows.data()), eight,
                    reinterpret_cast<std::byte*>(recv_rows.data()), eight);
  }
  size_t n_send = 0, n_recv = 0;
  for (int d = 0; d < world; ++d) n_send += send_rows[size_t(d)], n_recv += recv_rows[size_t(d)];
  // Rows and their expert ids, packed per destination.
  std::vector<std::byte> send(n_send * row_bytes), recv(n_recv * row_bytes);
  std::vector<int32_t> send_ids, recv_ids(n_recv);
  size_t at = 0;
  for (int d = 0; d < world; ++d)
    for (int64_t pr : to[size_t(d)]) {
      std::memcpy(send.data() + at++ * row_bytes, in.t.row_ptr(pr / k), row_bytes);
      send_ids.push_back(r.ids[pr]);
    }
  auto bytes = [&](const std::vector<size_t>& rows, size_t per) {
    std::vector<size_t> b;
    for (size_t n : rows) b.push_back(n * per);
    return b;
  };
  lc.all_to_all_v(send.data(), bytes(send_rows, row_bytes), recv.data(), bytes(recv_rows, row_bytes));
  lc.all_to_all_v(reinterpret_cast<const std::byte*>(send_ids.data()), bytes(send_rows, 4),
                  reinterpret_cast<std::byte*>(recv_ids.data()), bytes(recv_rows, 4));

  // Owners: each received row is one (token, slot) pair of a peer with top-1 "routing" to
  // its expert: run the owned experts over them.
  const Tensor rows(recv.data(), x.dtype(), {int64_t(n_recv), h});
  const Tensor vals = ws.alloc(DType::kF32, {int64_t(n_recv), h});
  {
    std::vector<int64_t> all(n_recv);
    for (size_t i = 0; i < n_recv; ++i) all[i] = int64_t(i);
    run_experts(rows, recv_ids.data(), 1, ws, vals, all);  // each row is one token with one slot
  }
  // Return the values to their home ranks, in the order they came.
  std::vector<float> back(n_send * size_t(h));
  lc.all_to_all_v(reinterpret_cast<const std::byte*>(vals.data()), bytes(recv_rows, size_t(h) * 4),
                  reinterpret_cast<std::byte*>(back.data()), bytes(send_rows, size_t(h) * 4));

  // Home: each pair's value is the tree sum of its MoE-TP owners' partials (rank order).
  const Tensor values = ws.alloc(DType::kF32, {ts * k, h});
  std::vector<std::vector<const float*>> parts(size_t(ts * k));
  at = 0;
  for (int d = 0; d < world; ++d)
    for (int64_t pr : to[size_t(d)]) parts[size_t(pr)].push_back(back.data() + at++ * size_t(h));
  for (int64_t pr = 0; pr < ts * k; ++pr) {
    float* dst = values.data_as<float>() + pr * h;
    std::vector<float*> blocks;
    std::vector<std::vector<float>> tmp(parts[size_t(pr)].size());
    for (size_t j = 0; j < parts[size_t(pr)].size(); ++j) {
      tmp[j].assign(parts[size_t(pr)][j], parts[size_t(pr)][j] + h);
      blocks.push_back(tmp[j].data());
    }
    tree_combine(blocks.data(), int(blocks.size()), size_t(h));
    std::memcpy(dst, blocks[0], sizeof(float) * size_t(h));
  }
  const auto [b, e] = lc.scattered_range();
  const Tensor mine = ws.alloc(DType::kF32, {ts, h});
  combine(values, r.weights, ts, shared ? shared + b * h : nullptr, mine.data_as<float>());
  const Hidden done = lc.from_moe_output({mine, Layout::kScattered, PartialOver::kNone}, ws);
  std::memcpy(out.data(), done.t.data(), done.t.nbytes());
  (void)e;
}

}  // namespace sparrow
