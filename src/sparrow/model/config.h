// ModelConfig: the architecture hyper-parameters Sparrow needs, read from a Hugging Face
// config.json. One struct for every supported model_type; per-architecture defaults and
// key spellings (num_experts vs num_local_experts, rope_theta vs rope_parameters, ...)
// are resolved here so layers never look at JSON.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sparrow {

enum class QKNorm : uint8_t {
  kNone,
  kPerHead,     // Qwen3: RMSNorm over each head's D features (weight [D])
  kProjection,  // OLMoE: RMSNorm over the whole q / k projection (weight [Hq*D] / [Hkv*D])
};

struct ModelConfig {
  std::string model_type;  // "qwen3_moe", "qwen2_moe", "mixtral", "olmoe"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;      // dense MLP layers (mlp_only_layers / non-sparse steps)
  int64_t moe_intermediate_size = 0;  // one routed expert (Mixtral, OLMoE: their intermediate_size)
  int64_t num_experts = 0;
  int64_t top_k = 0;
  bool norm_topk_prob = false;  // renormalize the k routing weights (always true for Mixtral)
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert (Qwen2-MoE has one)
  std::vector<int64_t> mlp_only_layers;
  int64_t decoder_sparse_step = 1;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry biases
  bool o_proj_bias = false;     // o_proj carries a bias (Qwen3-MoE / OLMoE with attention_bias)
  QKNorm qk_norm = QKNorm::kNone;
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
  int64_t pad_token_id = -1;

  // True when this decoder layer uses routed experts rather than a dense MLP.
  bool is_moe_layer(int64_t layer) const;

  // Throws InputError naming the key and `source` (the file, for messages), or listing the
  // supported model types for an unknown one. Features Sparrow does not implement yet
  // (rope scaling other than "default", partial rotary, sliding windows, clip_qkv, an
  // activation other than silu) are refused rather than ignored.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  // Reads DIR/config.json.
  static ModelConfig from_dir(const std::string& dir);
};

// The model_types this build supports, e.g. for error messages: "qwen3_moe, qwen2_moe, ...".
std::string supported_model_types();

}  // namespace sparrow
