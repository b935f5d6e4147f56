#include "sparrow/parallel/rank_context.h"

namespace sparrow {

RankContext RankComms::context(const Mesh& mesh, int rank, bool deterministic, int leaves, MoeA2ABackend a2a) const {
  RankContext c;
  c.mesh = mesh;
  c.rank = rank;
  c.deterministic = deterministic;
  c.leaves = deterministic ? leaves : 1;
  c.a2a = a2a;
  c.world = world.get();
  c.attn_tp = attn_tp.get();
  c.attn_dp = attn_dp.get();
  c.moe_tp = moe_tp.get();
  return c;
}

RankComms RankComms::create(CommWorld& w, const Mesh& mesh, int rank) {
  RankComms rc;
  rc.world = w.communicator(rank);
  rc.attn_tp = w.group(mesh.attn_tp_group(rank), rank);
  std::vector<int> dp_peers;
  for (int d = 0; d < mesh.attn_dp; ++d) dp_peers.push_back(d * mesh.attn_tp + mesh.attn_tp_rank(rank));
  rc.attn_dp = w.group(dp_peers, rank);
  rc.moe_tp = w.group(mesh.moe_tp_group(rank), rank);
  return rc;
}

int deterministic_leaves(const ModelConfig& c) {
  auto divides = [](int64_t d, int64_t v) { return v <= 0 || v % d == 0; };
  int best = 1;
  for (int l = 2; l <= 8; l *= 2) {
    bool ok = divides(l, c.num_heads) && divides(l, c.moe_intermediate_size) &&
              divides(l, c.shared_expert_intermediate_size) && divides(l, c.intermediate_size);
    if (ok) best = l;
  }
  return best;
}

}  // namespace sparrow
