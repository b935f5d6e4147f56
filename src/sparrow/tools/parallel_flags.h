// The parallel-layout flags shared by `serve`, `generate` and `parity` (SGLang's names):
// --tp-size, --dp-size, --ep-size, --enable-dp-attention, --moe-a2a-backend,
// --moe-dense-tp-size, --load-balance-method, --enable-deterministic-inference, and the
// multi-node ones: --nnodes, --node-rank, --dist-init-addr.
#pragma once

#include <string>

#include "sparrow/engine/engine.h"

namespace CLI {
class App;
}

namespace sparrow::tools {

struct ParallelFlags {
  int tp_size = 1, dp_size = 1, ep_size = 1, moe_dense_tp_size = 0;
  bool enable_dp_attention = false;
  bool deterministic = false;
  std::string moe_a2a_backend = "none";
  std::string load_balance_method = "round_robin";
  int nnodes = 1, node_rank = 0;
  std::string dist_init_addr;  // host:port of node 0

  // Writes the layout into `o`. InputError on an unknown backend or method, and on
  // multi-node flags that do not fit (node rank outside the nodes, an address that does not
  // parse, a world that does not split evenly over the nodes).
  void apply(EngineOptions& o) const;
  std::string describe() const;
};

void add_parallel_flags(CLI::App& app, ParallelFlags& f);

}  // namespace sparrow::tools
