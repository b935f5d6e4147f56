// RankContext: everything one rank's model needs to know about the parallel layout: where
// it sits in the mesh, the communicators of its groups, and the numerics mode. A
// single-rank model gets a context whose groups all have size 1.
#pragma once

#include <memory>
#include <string>

#include "sparrow/parallel/communicator.h"
#include "sparrow/parallel/mesh.h"

namespace sparrow {

// How the MoE output of the ranks is combined (--moe-a2a-backend).
enum class MoeA2ABackend : uint8_t {
  kNone,      // every rank sees every token; partial sums are all-reduced
  kAllToAll,  // tokens are dispatched to the ranks owning their experts and combined at home
};

// The parallel layout and numerics mode of a whole deployment (the server flags).
struct ParallelOptions {
  ParallelConfig layout;
  bool deterministic = false;  // --enable-deterministic-inference
  MoeA2ABackend a2a = MoeA2ABackend::kNone;
  // Multi-node (--nnodes, --node-rank, --dist-init-addr): the world's tp_size ranks spread
  // evenly over nnodes processes, this one holding ranks [node_rank * tp / nnodes, ...).
  // Node 0 serves the NCCL id at dist_init_addr (parallel/rendezvous.h).
  int nnodes = 1, node_rank = 0;
  std::string dist_init_addr;
};

struct RankContext {
  Mesh mesh;
  int rank = 0;
  bool deterministic = false;
  // Deterministic mode: every K-reduction that tensor parallelism may split (o_proj, the
  // down projections) is cut into `leaves` equal blocks combined by a fixed binary tree, so a
  // rank's shard is a subtree and the all-reduce finishes the same tree (docs/numerics.md).
  int leaves = 1;
  MoeA2ABackend a2a = MoeA2ABackend::kNone;
  // Groups (all non-null; size 1 when the axis is trivial).
  Communicator* world = nullptr;
  Communicator* attn_tp = nullptr;   // ranks sharing this rank's attention tokens
  Communicator* attn_dp = nullptr;   // one rank per DP group: same attention-TP rank
  Communicator* moe_tp = nullptr;    // ranks sharing this rank's experts

  int attn_tp_rank() const { return mesh.attn_tp_rank(rank); }
  int moe_tp_rank() const { return mesh.moe_tp_rank(rank); }
  int moe_ep_rank() const { return mesh.moe_ep_rank(rank); }
};

// Owns the communicators of one rank, built from a world of either backend. create() asks
// for the groups in a fixed order (world, attention TP, attention DP, MoE TP) and each round
// partitions the world, which is what NCCL's split needs: with NcclWorld every rank calls
// create() at the same time from its own thread.
struct RankComms {
  std::unique_ptr<Communicator> world, attn_tp, attn_dp, moe_tp;
  RankContext context(const Mesh& mesh, int rank, bool deterministic, int leaves, MoeA2ABackend a2a) const;
  static RankComms create(CommWorld& w, const Mesh& mesh, int rank);
};

// Leaves for deterministic mode, from the model's shape alone: the largest power of two up
// to 8 that divides every dimension a tensor-parallel rank may split (heads, intermediate
// sizes), so every layout with TP <= leaves reduces along the same tree.
int deterministic_leaves(const ModelConfig& c);

}  // namespace sparrow
