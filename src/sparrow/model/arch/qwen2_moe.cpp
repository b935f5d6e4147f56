// Qwen2-MoE (Qwen1.5-MoE): q/k/v biases, a shared expert gated by sigmoid(shared_expert_gate(x)).
#include "sparrow/model/arch/arch_spec.h"

namespace sparrow {
ArchSpec qwen2_moe_arch() { return ArchSpec{.model_type = "qwen2_moe"}; }
}  // namespace sparrow
