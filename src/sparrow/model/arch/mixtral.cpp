// Mixtral: experts under block_sparse_moe.experts.<e> with w1 (gate), w3 (up), w2 (down).
#include "sparrow/model/arch/arch_spec.h"

namespace sparrow {
ArchSpec mixtral_arch() {
  ArchSpec a{.model_type = "mixtral", .moe_block = "block_sparse_moe"};
  a.moe.expert_proj = Mlp::Names{.gate = "w1", .up = "w3", .down = "w2"};
  return a;
}
}  // namespace sparrow
