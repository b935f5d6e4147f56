#include "sparrow/parallel/mesh.h"

#include <fmt/format.h>

#include "sparrow/core/error.h"

namespace sparrow {

Mesh Mesh::build(const ParallelConfig& p, const ModelConfig& c) {
  SPARROW_REQUIRE(p.tp_size >= 1 && p.dp_size >= 1 && p.ep_size >= 1, "--tp-size, --dp-size and --ep-size must be >= 1");
  SPARROW_REQUIRE(p.dp_size == 1 || p.enable_dp_attention,
                  "--dp-size {} needs --enable-dp-attention (data-parallel replicas without it are separate servers)", p.dp_size);
  SPARROW_REQUIRE(p.tp_size % p.dp_size == 0, "--tp-size {} must be a multiple of --dp-size {} (attention TP = tp / dp)",
                  p.tp_size, p.dp_size);
  SPARROW_REQUIRE(p.tp_size % p.ep_size == 0, "--tp-size {} must be a multiple of --ep-size {} (MoE TP = tp / ep)", p.tp_size,
                  p.ep_size);
  Mesh m;
  m.world = p.tp_size;
  m.attn_dp = p.dp_size;
  m.attn_tp = p.tp_size / p.dp_size;
  m.moe_ep = p.ep_size;
  m.moe_tp = p.tp_size / p.ep_size;
  SPARROW_REQUIRE(c.num_heads % m.attn_tp == 0, "{} attention heads do not split over attention TP {} (tp {} / dp {})",
                  c.num_heads, m.attn_tp, p.tp_size, p.dp_size);
  SPARROW_REQUIRE(c.num_kv_heads % m.attn_tp == 0 || m.attn_tp % c.num_kv_heads == 0,
                  "{} KV heads neither split over nor replicate across attention TP {}", c.num_kv_heads, m.attn_tp);
  if (c.num_experts > 0) {
    SPARROW_REQUIRE(c.num_experts % m.moe_ep == 0, "{} experts do not split over --ep-size {}", c.num_experts, m.moe_ep);
    SPARROW_REQUIRE(c.moe_intermediate_size % m.moe_tp == 0, "expert intermediate size {} does not split over MoE TP {} (tp {} / ep {})",
                    c.moe_intermediate_size, m.moe_tp, p.tp_size, p.ep_size);
    if (c.shared_expert_intermediate_size > 0)
      SPARROW_REQUIRE(c.shared_expert_intermediate_size % m.attn_tp == 0,
                      "shared expert intermediate size {} does not split over attention TP {}",
                      c.shared_expert_intermediate_size, m.attn_tp);
  }
  SPARROW_REQUIRE(p.moe_dense_tp_size == 0 || p.moe_dense_tp_size == 1 || p.moe_dense_tp_size == m.attn_tp,
                  "--moe-dense-tp-size {}: dense MLP layers run with attention TP ({}) or whole on every rank (1)",
                  p.moe_dense_tp_size, m.attn_tp);
  m.dense_tp = p.moe_dense_tp_size == 1 ? 1 : m.attn_tp;
  bool has_dense = false;
  for (int64_t l = 0; l < c.num_layers; ++l) has_dense |= !c.is_moe_layer(l);
  if (has_dense)
    SPARROW_REQUIRE(c.intermediate_size % m.dense_tp == 0, "dense MLP intermediate size {} does not split over TP {}",
                    c.intermediate_size, m.dense_tp);
  return m;
}

std::vector<int> Mesh::world_group() const {
  std::vector<int> g;
  for (int r = 0; r < world; ++r) g.push_back(r);
  return g;
}

std::vector<int> Mesh::attn_tp_group(int r) const {
  std::vector<int> g;
  for (int k = 0; k < attn_tp; ++k) g.push_back(attn_dp_rank(r) * attn_tp + k);
  return g;
}

std::vector<int> Mesh::moe_tp_group(int r) const {
  std::vector<int> g;
  for (int k = 0; k < moe_tp; ++k) g.push_back(moe_ep_rank(r) * moe_tp + k);
  return g;
}

std::vector<int> Mesh::moe_ep_group(int r) const {
  std::vector<int> g;
  for (int e = 0; e < moe_ep; ++e) g.push_back(e * moe_tp + moe_tp_rank(r));
  return g;
}

std::string Mesh::describe() const {
  return fmt::format("world {} = attention dp {} x tp {} = MoE ep {} x tp {}{}", world, attn_dp, attn_tp, moe_ep, moe_tp,
                     dense_tp != attn_tp ? ", dense MLP whole on every rank" : "");
}

}  // namespace sparrow
