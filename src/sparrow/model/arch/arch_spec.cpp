#include "sparrow/model/arch/arch_spec.h"

#include "sparrow/core/error.h"
#include "sparrow/model/config.h"

namespace sparrow {

ArchSpec arch_for(const std::string& model_type) {
  if (model_type == "qwen3_moe") return qwen3_moe_arch();
  if (model_type == "qwen2_moe") return qwen2_moe_arch();
  if (model_type == "mixtral") return mixtral_arch();
  if (model_type == "olmoe") return olmoe_arch();
  throw_input_error("unsupported model_type '{}' (supported: {})", model_type, supported_model_types());
}

}  // namespace sparrow
