// Mesh: how the world's ranks (world = --tp-size) factor, once for attention and once for
// the MoE layers, and the rank lists of each group.
//
//   attention:  world = attn_dp x attn_tp     (attn_dp = --dp-size with --enable-dp-attention)
//   MoE:        world = moe_ep  x moe_tp      (moe_ep = --ep-size)
//   dense MLP:  attention TP, or whole on every rank (--moe-dense-tp-size 1)
//
// World rank r sits at attn_dp index r / attn_tp, attention-TP rank r % attn_tp; expert
// group r / moe_tp, MoE-TP rank r % moe_tp. Groups are passed to the layers that need them,
// never looked up globally.
#pragma once

#include <string>
#include <vector>

#include "sparrow/model/config.h"

namespace sparrow {

struct ParallelConfig {
  int tp_size = 1;
  int dp_size = 1;
  int ep_size = 1;
  bool enable_dp_attention = false;
  int moe_dense_tp_size = 0;  // 0: dense MLP layers use attention TP (SGLang's default); 1: replicated
};

struct Mesh {
  int world = 1;
  int attn_tp = 1, attn_dp = 1;
  int moe_ep = 1, moe_tp = 1;
  // Dense (non-MoE) MLP layers: split over attention TP (dense_tp == attn_tp), or held whole
  // by every rank (dense_tp == 1, --moe-dense-tp-size 1: no collective, redundant compute).
  int dense_tp = 1;

  // Validates the layout against the model (divisibility of heads, experts, intermediate
  // sizes); throws InputError naming the flag and the numbers.
  static Mesh build(const ParallelConfig& p, const ModelConfig& c);

  int attn_tp_rank(int r) const { return r % attn_tp; }
  int attn_dp_rank(int r) const { return r / attn_tp; }
  int moe_tp_rank(int r) const { return r % moe_tp; }
  int moe_ep_rank(int r) const { return r / moe_tp; }

  std::vector<int> world_group() const;
  std::vector<int> attn_tp_group(int r) const;  // ranks sharing r's attention data
  std::vector<int> moe_tp_group(int r) const;   // ranks sharing r's experts
  std::vector<int> moe_ep_group(int r) const;   // one rank per expert group, same moe_tp rank

  std::string describe() const;
};

}  // namespace sparrow
