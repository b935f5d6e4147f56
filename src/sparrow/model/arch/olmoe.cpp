// OLMoE: q/k RMSNorm over the whole projection; every layer sparse.
#include "sparrow/model/arch/arch_spec.h"

namespace sparrow {
ArchSpec olmoe_arch() { return ArchSpec{.model_type = "olmoe"}; }
}  // namespace sparrow
