// ArchSpec: how one Hugging Face model_type names its weights. Everything numeric about an
// architecture is in ModelConfig; this is only the wiring vocabulary, one small file per
// model_type (arch/<model_type>.cpp).
#pragma once

#include <string>

#include "sparrow/model/layers/moe.h"

namespace sparrow {

struct ArchSpec {
  std::string model_type;
  std::string moe_block = "mlp";  // model.layers.<i>.<moe_block>.* for sparse layers
  MoeNames moe;
};

ArchSpec qwen3_moe_arch();
ArchSpec qwen2_moe_arch();
ArchSpec mixtral_arch();
ArchSpec olmoe_arch();

// Looks up the spec for config.model_type; throws InputError naming the supported types.
ArchSpec arch_for(const std::string& model_type);

}  // namespace sparrow
