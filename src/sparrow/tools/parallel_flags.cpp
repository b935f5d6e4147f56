#include "sparrow/tools/parallel_flags.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "sparrow/parallel/host_port.h"

namespace sparrow::tools {
namespace {

// Checked here so that a bad multi-node command fails before any model is loaded; whether
// the engine can run multi-node at all is decided in one place, ModelExecutor.
void apply_nodes(const ParallelFlags& f, ParallelOptions& p) {
  SPARROW_REQUIRE(f.nnodes >= 1, "--nnodes must be >= 1, got {}", f.nnodes);
  SPARROW_REQUIRE(f.node_rank >= 0 && f.node_rank < f.nnodes, "--node-rank {} must be in 0..{} (--nnodes {})", f.node_rank,
                  f.nnodes - 1, f.nnodes);
  SPARROW_REQUIRE(f.tp_size % f.nnodes == 0,
                  "--tp-size {} must be a multiple of --nnodes {} (each node runs tp-size / nnodes ranks)", f.tp_size,
                  f.nnodes);
  SPARROW_REQUIRE(f.nnodes == 1 || !f.dist_init_addr.empty(),
                  "--nnodes {} needs --dist-init-addr host:port (node 0's address, the same on every node)", f.nnodes);
  if (!f.dist_init_addr.empty()) (void)parse_host_port(f.dist_init_addr, "--dist-init-addr");
  p.nnodes = f.nnodes;
  p.node_rank = f.node_rank;
  p.dist_init_addr = f.dist_init_addr;
}

}  // namespace

void ParallelFlags::apply(EngineOptions& o) const {
  o.parallel.layout = {tp_size, dp_size, ep_size, enable_dp_attention, moe_dense_tp_size};
  o.parallel.deterministic = deterministic;
  if (moe_a2a_backend == "none") o.parallel.a2a = MoeA2ABackend::kNone;
  else if (moe_a2a_backend == "alltoall") o.parallel.a2a = MoeA2ABackend::kAllToAll;
  else throw_input_error("--moe-a2a-backend '{}' is not supported (none, alltoall)", moe_a2a_backend);
  if (load_balance_method == "round_robin") o.dp_router = DpRouter::kRoundRobin;
  else if (load_balance_method == "least_load" || load_balance_method == "shortest_queue") o.dp_router = DpRouter::kLeastLoad;
  else throw_input_error("--load-balance-method '{}' is not supported (round_robin, least_load)", load_balance_method);
  apply_nodes(*this, o.parallel);
}

std::string ParallelFlags::describe() const {
  return fmt::format("tp {} dp {}{} ep {} a2a {}{}{}", tp_size, dp_size, enable_dp_attention ? " (dp-attention)" : "", ep_size,
                     moe_a2a_backend, deterministic ? " deterministic" : "",
                     nnodes > 1 ? fmt::format(" node {} of {}", node_rank, nnodes) : "");
}

void add_parallel_flags(CLI::App& app, ParallelFlags& f) {
  app.add_option("--tp-size", f.tp_size, "World size: ranks (CPU threads here) the model is split over")->capture_default_str();
  app.add_option("--dp-size", f.dp_size, "Data-parallel attention groups (needs --enable-dp-attention)")->capture_default_str();
  app.add_option("--ep-size", f.ep_size, "Expert-parallel groups (MoE TP = tp / ep)")->capture_default_str();
  app.add_flag("--enable-dp-attention", f.enable_dp_attention, "Attention data-parallel over --dp-size groups");
  app.add_option("--moe-a2a-backend", f.moe_a2a_backend, "none (all-reduce partial sums) | alltoall (dispatch/combine)")
      ->capture_default_str();
  app.add_option("--moe-dense-tp-size", f.moe_dense_tp_size, "TP of dense MLP layers: attention TP (default) or 1 (whole on every rank)");
  app.add_option("--load-balance-method", f.load_balance_method, "DP router: round_robin | least_load")->capture_default_str();
  app.add_flag("--enable-deterministic-inference", f.deterministic,
               "Bit-identical results whatever the batch, chunking, cache hits and parallel layout");
  app.add_option("--nnodes", f.nnodes, "Nodes the --tp-size ranks are spread over (needs the CUDA device backend)")
      ->capture_default_str();
  app.add_option("--node-rank", f.node_rank, "This node's index, 0..nnodes-1 (node 0 serves the rendezvous)")
      ->capture_default_str();
  app.add_option("--dist-init-addr", f.dist_init_addr, "host:port of node 0's rendezvous, the same on every node");
}

}  // namespace sparrow::tools
