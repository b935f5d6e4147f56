#include "sparrow/parallel/layer_communicator.h"

#include <cstring>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

const char* name(Layout l) {
  switch (l) {
    case Layout::kAttnTPFull: return "AttnTPFull";
    case Layout::kFull: return "Full";
    case Layout::kScattered: return "Scattered";
  }
  return "?";
}

const char* name(PartialOver p) {
  switch (p) {
    case PartialOver::kNone: return "complete";
    case PartialOver::kAttnTP: return "Partial(attn_tp)";
    case PartialOver::kWorld: return "Partial(world)";
  }
  return "?";
}

void expect(const Hidden& h, Layout l, PartialOver p, const char* op) {
  SPARROW_CHECK(h.layout == l && h.partial == p, "LayerCommunicator::{}: expects {} {}, got {} {}", op, name(l), name(p),
                name(h.layout), name(h.partial));
}

}  // namespace

void LayerCommunicator::begin_step(int64_t tokens) {
  const int dp = ctx_.mesh.attn_dp;
  dp_tokens_.assign(size_t(dp), 0);
  ctx_.attn_dp->all_gather_host({reinterpret_cast<const std::byte*>(&tokens), sizeof tokens},
                           reinterpret_cast<std::byte*>(dp_tokens_.data()));
  full_tokens_ = 0;
  for (int64_t t : dp_tokens_) full_tokens_ += t;
}

int64_t LayerCommunicator::dp_offset() const {
  int64_t off = 0;
  for (int d = 0; d < ctx_.mesh.attn_dp_rank(ctx_.rank); ++d) off += dp_tokens_[size_t(d)];
  return off;
}

std::pair<int64_t, int64_t> LayerCommunicator::scattered_range() const {
  const int64_t t = dp_tokens(), n = ctx_.mesh.attn_tp, r = ctx_.attn_tp_rank();
  const int64_t base = t / n, extra = t % n;
  const int64_t b = r * base + std::min(r, extra);
  return {b, b + base + (r < extra ? 1 : 0)};
}

Hidden LayerCommunicator::reduce_attn_tp(Hidden h) {
  expect(h, Layout::kAttnTPFull, PartialOver::kAttnTP, "reduce_attn_tp");
  SPARROW_CHECK(h.t.dtype() == DType::kF32 && h.t.is_contiguous(), "partial sums are contiguous fp32");
  ctx_.attn_tp->all_reduce(h.t.data_as<float>(), size_t(h.t.numel()));
  h.partial = PartialOver::kNone;
  return h;
}

Hidden LayerCommunicator::to_moe_input(Hidden h, Arena& ws) {
  expect(h, Layout::kAttnTPFull, PartialOver::kNone, "to_moe_input");
  const int64_t hsz = h.t.size(1);
  const size_t row_bytes = size_t(hsz) * dtype_size(h.t.dtype());
  if (ctx_.a2a == MoeA2ABackend::kAllToAll) {
    const auto [b, e] = scattered_range();
    return {h.t.slice_rows(b, e), Layout::kScattered, PartialOver::kNone};
  }
  if (ctx_.mesh.attn_dp == 1) return {h.t, Layout::kFull, PartialOver::kNone};
  const Tensor full = ws.alloc(h.t.dtype(), {full_tokens_, hsz});
  std::vector<size_t> counts;
  for (int64_t t : dp_tokens_) counts.push_back(size_t(t) * row_bytes);
  ctx_.attn_dp->all_gatherv({static_cast<const std::byte*>(h.t.data()), size_t(h.t.numel()) * dtype_size(h.t.dtype())},
                            static_cast<std::byte*>(full.data()), counts);
  return {full, Layout::kFull, PartialOver::kNone};
}

Hidden LayerCommunicator::from_moe_output(Hidden h, Arena& ws) {
  if (ctx_.a2a == MoeA2ABackend::kAllToAll) {
    expect(h, Layout::kScattered, PartialOver::kNone, "from_moe_output");
    const int64_t hsz = h.t.size(1);
    const size_t row_bytes = size_t(hsz) * dtype_size(h.t.dtype());
    const Tensor out = ws.alloc(h.t.dtype(), {dp_tokens(), hsz});
    std::vector<size_t> counts;
    const int64_t t = dp_tokens(), n = ctx_.mesh.attn_tp;
    for (int64_t r = 0; r < n; ++r) counts.push_back(size_t(t / n + (r < t % n ? 1 : 0)) * row_bytes);
    ctx_.attn_tp->all_gatherv({static_cast<const std::byte*>(h.t.data()), size_t(h.t.size(0)) * row_bytes},
                              static_cast<std::byte*>(out.data()), counts);
    return {out, Layout::kAttnTPFull, PartialOver::kNone};
  }
  expect(h, Layout::kFull, PartialOver::kWorld, "from_moe_output");
  SPARROW_CHECK(h.t.dtype() == DType::kF32 && h.t.is_contiguous(), "partial sums are contiguous fp32");
  ctx_.world->all_reduce(h.t.data_as<float>(), size_t(h.t.numel()));
  return {h.t.slice_rows(dp_offset(), dp_offset() + dp_tokens()), Layout::kAttnTPFull, PartialOver::kNone};
}

void LayerCommunicator::reduce_moe_tp(float* data, size_t n) { ctx_.moe_tp->all_reduce(data, n); }

std::pair<int64_t, int64_t> LayerCommunicator::dp_pairs(int r, int64_t k) const {
  const int d = ctx_.mesh.attn_dp_rank(r);
  int64_t off = 0;
  for (int i = 0; i < d; ++i) off += dp_tokens_[size_t(i)];
  return {off * k, (off + dp_tokens_[size_t(d)]) * k};
}

std::vector<const float*> LayerCommunicator::gather_slots(const Tensor& rows, const std::vector<int64_t>& pair,
                                                         const int32_t* ids, int64_t k, int64_t experts_per_group) {
  const Mesh& m = ctx_.mesh;
  SPARROW_CHECK(rows.dtype() == DType::kF32 && rows.is_contiguous() && rows.size(0) == int64_t(pair.size()),
                "gather_slots: owned slot values are contiguous fp32 [pairs, H]");
  const int me = ctx_.rank, group = m.moe_ep_rank(me);
  const int64_t h = rows.size(1);
  const auto [mine_b, mine_e] = dp_pairs(me, k);
  std::vector<const float*> slot(size_t(mine_e - mine_b), nullptr);
  std::vector<int64_t> row_of(size_t(full_tokens_ * k), -1);
  for (size_t i = 0; i < pair.size(); ++i) {
    row_of[size_t(pair[i])] = int64_t(i);
    if (pair[i] >= mine_b && pair[i] < mine_e) slot[size_t(pair[i] - mine_b)] = rows.data_as<float>() + int64_t(i) * h;
  }
  if (m.moe_ep > 1) {
    // My peers are the ranks with my MoE-TP rank in the other expert groups: each sends me
    // the pairs of my DP group that its group owns, and I send it those of its DP group that
    // mine owns, both in increasing pair order (the routing is replicated, so both sides know
    // the lists without exchanging them).
    std::vector<size_t> send_bytes(size_t(m.world), 0), recv_bytes(size_t(m.world), 0);
    std::vector<int64_t> recv_pairs;
    const size_t row = size_t(h) * sizeof(float);
    send_rows_.clear();
    for (int q = 0; q < m.world; ++q) {
      if (m.moe_tp_rank(q) != m.moe_tp_rank(me) || m.moe_ep_rank(q) == group) continue;
      const auto [b, e] = dp_pairs(q, k);
      for (int64_t p = b; p < e; ++p)
        if (ids[p] / experts_per_group == group) {
          const float* src = rows.data_as<float>() + row_of[size_t(p)] * h;
          send_rows_.insert(send_rows_.end(), src, src + h);
          send_bytes[size_t(q)] += row;
        }
      for (int64_t p = mine_b; p < mine_e; ++p)
        if (ids[p] / experts_per_group == m.moe_ep_rank(q)) {
          recv_pairs.push_back(p);
          recv_bytes[size_t(q)] += row;
        }
    }
    recv_rows_.resize(recv_pairs.size() * size_t(h));
    ctx_.world->all_to_all_v(reinterpret_cast<const std::byte*>(send_rows_.data()), send_bytes,
                             reinterpret_cast<std::byte*>(recv_rows_.data()), recv_bytes);
    for (size_t i = 0; i < recv_pairs.size(); ++i) slot[size_t(recv_pairs[i] - mine_b)] = recv_rows_.data() + i * size_t(h);
  }
  for (const float* s : slot) SPARROW_CHECK(s, "gather_slots: a pair of this DP group has no owner");
  return slot;
}

void LayerCommunicator::all_reduce_attn_tp(float* data, size_t n) { ctx_.attn_tp->all_reduce(data, n); }

void LayerCommunicator::complete_slot_values(float* data, size_t n) { ctx_.world->all_reduce(data, n); }

std::vector<size_t> LayerCommunicator::exchange_counts(std::span<const size_t> send) {
  const size_t w = size_t(ctx_.mesh.world);
  SPARROW_CHECK(send.size() == w, "exchange_counts: {} counts for {} ranks", send.size(), w);
  std::vector<size_t> all(w * w), recv(w);
  ctx_.world->all_gather_host(std::as_bytes(send), reinterpret_cast<std::byte*>(all.data()));
  for (size_t r = 0; r < w; ++r) recv[r] = all[r * w + size_t(ctx_.rank)];
  return recv;
}

void LayerCommunicator::all_gather_cols_attn_tp(const Tensor& mine, const Tensor& out, Arena& ws) {
  const int n = ctx_.mesh.attn_tp;
  const int64_t rows = mine.size(0);
  if (n == 1) {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(out.row_ptr(r), mine.row_ptr(r), size_t(mine.size(1)) * dtype_size(mine.dtype()));
    return;
  }
  // Gather whole blocks, then interleave them column-wise.
  std::vector<size_t> counts(static_cast<size_t>(n));
  std::vector<int64_t> cols(static_cast<size_t>(n));
  const int64_t total_cols = out.size(1), es = int64_t(dtype_size(mine.dtype()));
  for (int r = 0; r < n; ++r) {
    const int64_t per = (total_cols + n - 1) / n;
    cols[size_t(r)] = std::max<int64_t>(0, std::min(total_cols, per * (r + 1)) - per * r);
    counts[size_t(r)] = size_t(rows * cols[size_t(r)] * es);
  }
  const Tensor blocks = ws.alloc(mine.dtype(), {rows * total_cols});
  ctx_.attn_tp->all_gatherv({static_cast<const std::byte*>(mine.data()), size_t(mine.numel() * es)},
                            static_cast<std::byte*>(blocks.data()), counts);
  int64_t block_off = 0, col_off = 0;
  for (int r = 0; r < n; ++r) {
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(static_cast<char*>(out.row_ptr(i)) + col_off * es,
                  static_cast<const char*>(blocks.data()) + (block_off + i * cols[size_t(r)]) * es, size_t(cols[size_t(r)] * es));
    block_off += rows * cols[size_t(r)];
    col_off += cols[size_t(r)];
  }
}

void LayerCommunicator::all_to_all_v(const std::byte* send, std::span<const size_t> send_bytes, std::byte* recv,
                                     std::span<const size_t> recv_bytes) {
  ctx_.world->all_to_all_v(send, send_bytes, recv, recv_bytes);
}

}  // namespace sparrow
