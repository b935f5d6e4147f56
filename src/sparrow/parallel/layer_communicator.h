// LayerCommunicator: the only place where a hidden-state tensor changes layout between
// ranks. Layers hand it a Hidden (tensor + layout) and get back the layout they need; it
// refuses a transition it does not know, so a model file cannot reduce a partial sum twice
// or forget to (the SGLang TP2+DP2+EP2 bug).
//
// Layouts, per step (T_dp = tokens of this rank's DP group, T_full = of all DP groups):
//   AttnTPFull  [T_dp, H]   every token of the DP group, identical on its attention-TP ranks
//   Full        [T_full, H] every token of the world
//   Scattered   [T_mine, H] this rank's share of its DP group's tokens (alltoall MoE)
// and a tensor may be Partial over a group (a sum still owed).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sparrow/core/arena.h"
#include "sparrow/parallel/rank_context.h"

namespace sparrow {

enum class Layout : uint8_t { kAttnTPFull, kFull, kScattered };
enum class PartialOver : uint8_t { kNone, kAttnTP, kWorld };

struct Hidden {
  Tensor t;
  Layout layout = Layout::kAttnTPFull;
  PartialOver partial = PartialOver::kNone;
};

class LayerCommunicator {
 public:
  explicit LayerCommunicator(const RankContext& ctx) : ctx_(ctx) {}

  // Exchanges every DP group's token count (collective over the attention-DP peers).
  void begin_step(int64_t tokens_in_dp_group);
  int64_t dp_tokens() const { return dp_tokens_[size_t(ctx_.mesh.attn_dp_rank(ctx_.rank))]; }
  int64_t full_tokens() const { return full_tokens_; }
  int64_t dp_offset() const;  // first row of this DP group's tokens in the Full layout
  // This rank's share [begin, end) of its DP group's tokens in the Scattered layout.
  std::pair<int64_t, int64_t> scattered_range() const;
  const RankContext& ctx() const { return ctx_; }

  // Partial(attn_tp) f32 -> AttnTPFull (all-reduce over the attention-TP group, in place).
  Hidden reduce_attn_tp(Hidden h);
  // AttnTPFull -> Full (all-gather over DP groups) for the `none` MoE backend, or ->
  // Scattered (this rank's rows) for `alltoall`.
  Hidden to_moe_input(Hidden h, Arena& ws);
  // `none`: Partial(world) f32 Full -> AttnTPFull (all-reduce, then this DP group's rows).
  // `alltoall`: Scattered -> AttnTPFull (all-gather within the attention-TP group).
  Hidden from_moe_output(Hidden h, Arena& ws);
  // Deterministic `none`, step 1: the MoE-TP all-reduce (tree order over the expert group's
  // aligned block of ranks) of the partial per-slot values the group computed, in place.
  void reduce_moe_tp(float* data, size_t n);
  // Deterministic `none`, step 2: `rows` [n, H] f32 holds the complete values of the
  // (token, slot) pairs this rank's expert group owns (ids[pair] / experts_per_group == its
  // EP rank); row i is pair[i]. Returns, for every pair of this DP group's tokens in order
  // (indices token * k + slot, tokens in the Full layout), a pointer to its value: a row of
  // `rows`, or a row copied (never summed) from the owning group's rank with this rank's
  // MoE-TP rank by one all-to-all over the world (valid until the next call). The values are
  // those of the world all-reduce of [owners' values, -0.0 elsewhere] (x + -0.0 == x),
  // without the K x larger reduction.
  std::vector<const float*> gather_slots(const Tensor& rows, const std::vector<int64_t>& pair, const int32_t* ids,
                                         int64_t k, int64_t experts_per_group);
  // Deterministic `none` on GPU ranks: the world all-reduce (rank-order tree) of per-slot
  // values [T_full * k, H] where each pair's owners hold their partial values and every
  // other rank -0.0, in place: each value becomes its owners' subtree, complete.
  void complete_slot_values(float* data, size_t n);
  // Attention-TP all-reduce of a plain fp32 buffer (vocab-parallel embedding, a replicated
  // sub-result such as a shared expert's partial).
  void all_reduce_attn_tp(float* data, size_t n);
  // Concatenates each attention-TP rank's [rows, cols_r] block column-wise into out [rows, sum cols].
  void all_gather_cols_attn_tp(const Tensor& mine, const Tensor& out, Arena& ws);
  // recv[r] = what world rank r's send[me] says (per-destination row counts of an
  // all-to-all), exchanged in host memory whatever the backend.
  std::vector<size_t> exchange_counts(std::span<const size_t> send);
  // Raw all-to-all over the world (alltoall MoE dispatch and return).
  void all_to_all_v(const std::byte* send, std::span<const size_t> send_bytes, std::byte* recv,
                    std::span<const size_t> recv_bytes);

 private:
  // Pair range [begin, end) of world rank r's DP group in a [T_full * k] slot array.
  std::pair<int64_t, int64_t> dp_pairs(int r, int64_t k) const;

  const RankContext& ctx_;
  std::vector<int64_t> dp_tokens_;
  int64_t full_tokens_ = 0;
  std::vector<float> send_rows_, recv_rows_;  // gather_slots staging, kept across layers
};

}  // namespace sparrow
