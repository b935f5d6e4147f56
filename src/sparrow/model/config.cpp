// HF config.json -> ModelConfig. The reference for every default and key spelling is the
// transformers v5 configuration_*.py / modeling_*.py of each model_type; where HF has a
// class default for a key that fixes a tensor shape we require the key instead, so a
// truncated config fails loudly rather than building a model of the wrong size.
#include "sparrow/model/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <string_view>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

using json = nlohmann::json;

constexpr std::array<std::string_view, 4> kSupported = {"qwen3_moe", "qwen2_moe", "mixtral",
                                                        "olmoe"};

// A key counts as absent when missing or null (HF treats `"head_dim": null` as unset).
const json* find(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

struct Reader {
  const json& j;
  const std::string& src;

  int64_t as_int(const json& v, const char* key) const {
    SPARROW_REQUIRE(v.is_number_integer(), "{}: key \"{}\" must be an integer, got {}", src, key,
                    v.dump());
    if (v.is_number_unsigned())
      SPARROW_REQUIRE(v.get<uint64_t>() <= uint64_t(INT64_MAX), "{}: key \"{}\" is out of range",
                      src, key);
    return v.get<int64_t>();
  }
  int64_t req_int(const char* key) const {
    const json* v = find(j, key);
    SPARROW_REQUIRE(v, "{}: missing required key \"{}\"", src, key);
    return as_int(*v, key);
  }
  int64_t opt_int(const char* key, int64_t def) const {
    const json* v = find(j, key);
    return v ? as_int(*v, key) : def;
  }
  bool opt_bool(const char* key, bool def) const {
    const json* v = find(j, key);
    if (!v) return def;
    SPARROW_REQUIRE(v->is_boolean(), "{}: key \"{}\" must be true or false, got {}", src, key,
                    v->dump());
    return v->get<bool>();
  }
  double num(const json& v, const char* key) const {
    SPARROW_REQUIRE(v.is_number(), "{}: key \"{}\" must be a number, got {}", src, key, v.dump());
    return v.get<double>();
  }
  double opt_double(const char* key, double def) const {
    const json* v = find(j, key);
    return v ? num(*v, key) : def;
  }
  std::string opt_string(const char* key, const std::string& def) const {
    const json* v = find(j, key);
    if (!v) return def;
    SPARROW_REQUIRE(v->is_string(), "{}: key \"{}\" must be a string, got {}", src, key, v->dump());
    return v->get<std::string>();
  }
  // An int, a list of ints, or absent (-> def).
  std::vector<int64_t> opt_int_list(const char* key, std::vector<int64_t> def) const {
    const json* v = find(j, key);
    if (!v) return def;
    if (v->is_number_integer()) return {as_int(*v, key)};
    SPARROW_REQUIRE(v->is_array(), "{}: key \"{}\" must be an integer or a list of integers", src,
                    key);
    std::vector<int64_t> out;
    for (const json& e : *v) out.push_back(as_int(e, key));
    return out;
  }
  // First of `keys` present (HF attribute_map aliases, e.g. num_local_experts / num_experts).
  int64_t req_int_any(std::initializer_list<const char*> keys) const {
    for (const char* k : keys)
      if (find(j, k)) return req_int(k);
    throw_input_error("{}: missing required key \"{}\"", src, *keys.begin());
  }
};

// transformers' RotaryEmbeddingConfigMixin: rope_scaling (legacy) wins over rope_parameters;
// theta comes from the dict, else the top-level rope_theta, else the class default_theta.
void read_rope(const Reader& r, double default_theta, ModelConfig& c) {
  const json empty = json::object();
  const json* rp = find(r.j, "rope_scaling");
  if (rp && rp->is_object() && rp->empty()) rp = nullptr;
  if (!rp) rp = find(r.j, "rope_parameters");
  if (!rp) rp = &empty;
  SPARROW_REQUIRE(rp->is_object(), "{}: rope_parameters / rope_scaling must be an object, got {}",
                  r.src, rp->dump());
  const Reader rr{*rp, r.src};
  std::string type = rr.opt_string("rope_type", rr.opt_string("type", "default"));
  SPARROW_REQUIRE(type == "default",
                  "{}: rope_type \"{}\" is not supported yet (only \"default\" rotary embeddings)",
                  r.src, type);
  const json* theta = find(*rp, "rope_theta");
  c.rope_theta = theta ? rr.num(*theta, "rope_theta") : r.opt_double("rope_theta", default_theta);
  SPARROW_REQUIRE(c.rope_theta > 0, "{}: rope_theta must be positive, got {}", r.src, c.rope_theta);
  const json* prf = find(*rp, "partial_rotary_factor");
  if (!prf) prf = find(r.j, "partial_rotary_factor");
  if (prf)
    SPARROW_REQUIRE(r.num(*prf, "partial_rotary_factor") == 1.0,
                    "{}: partial_rotary_factor {} is not supported yet (only 1.0)", r.src,
                    prf->dump());
}

void check_sane(const ModelConfig& c, const std::string& src) {
  auto pos = [&](int64_t v, const char* what) {
    SPARROW_REQUIRE(v > 0, "{}: {} must be positive, got {}", src, what, v);
  };
  pos(c.vocab_size, "vocab_size");
  pos(c.hidden_size, "hidden_size");
  pos(c.num_layers, "num_hidden_layers");
  pos(c.num_heads, "num_attention_heads");
  pos(c.num_kv_heads, "num_key_value_heads");
  pos(c.head_dim, "head_dim");
  pos(c.max_position_embeddings, "max_position_embeddings");
  SPARROW_REQUIRE(c.num_heads % c.num_kv_heads == 0,
                  "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", src,
                  c.num_heads, c.num_kv_heads);
  SPARROW_REQUIRE(c.num_experts >= 0, "{}: num_experts must not be negative", src);
  if (c.num_experts > 0) {
    pos(c.moe_intermediate_size, "moe_intermediate_size");
    SPARROW_REQUIRE(c.top_k >= 1 && c.top_k <= c.num_experts,
                    "{}: num_experts_per_tok {} must be in [1, num_experts = {}]", src, c.top_k,
                    c.num_experts);
  }
  SPARROW_REQUIRE(c.decoder_sparse_step >= 1, "{}: decoder_sparse_step must be >= 1, got {}", src,
                  c.decoder_sparse_step);
  SPARROW_REQUIRE(c.rms_norm_eps > 0, "{}: rms_norm_eps must be positive", src);
  SPARROW_REQUIRE(c.shared_expert_intermediate_size >= 0,
                  "{}: shared_expert_intermediate_size must not be negative", src);
  bool any_dense = false;
  for (int64_t l = 0; l < c.num_layers; ++l) any_dense |= !c.is_moe_layer(l);
  if (any_dense) pos(c.intermediate_size, "intermediate_size (some layers are dense)");
}

}  // namespace

std::string supported_model_types() {
  std::string s;
  for (auto t : kSupported) s += (s.empty() ? "" : ", ") + std::string(t);
  return s;
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (model_type == "mixtral" || model_type == "olmoe") return true;
  // Qwen2-MoE / Qwen3-MoE decoder layer: HF modeling_qwen3_moe.Qwen3MoeDecoderLayer.
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end())
    return false;
  return num_experts > 0 && (layer + 1) % decoder_sparse_step == 0;
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& src) {
  SPARROW_REQUIRE(j.is_object(), "{}: expected a JSON object", src);
  const Reader r{j, src};
  ModelConfig c;
  const json* mt = find(j, "model_type");
  SPARROW_REQUIRE(mt, "{}: missing required key \"model_type\" (supported: {})", src,
                  supported_model_types());
  SPARROW_REQUIRE(mt->is_string(), "{}: model_type must be a string", src);
  c.model_type = mt->get<std::string>();
  SPARROW_REQUIRE(std::find(kSupported.begin(), kSupported.end(), c.model_type) != kSupported.end(),
                  "{}: unsupported model_type \"{}\" (supported: {})", src, c.model_type,
                  supported_model_types());
  const bool qwen = c.model_type == "qwen3_moe" || c.model_type == "qwen2_moe";

  // Shared keys.
  c.vocab_size = r.req_int("vocab_size");
  c.hidden_size = r.req_int("hidden_size");
  c.num_layers = r.req_int("num_hidden_layers");
  c.num_heads = r.req_int("num_attention_heads");
  // OLMoE: None -> num_attention_heads. Elsewhere the HF class default (4, 16, 8) is a
  // model-specific guess, so we require the key.
  c.num_kv_heads = c.model_type == "olmoe" ? r.opt_int("num_key_value_heads", c.num_heads)
                                           : r.req_int("num_key_value_heads");
  // getattr(config, "head_dim", None) or hidden_size // num_attention_heads.
  c.head_dim = r.opt_int("head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.top_k = r.req_int("num_experts_per_tok");
  c.rms_norm_eps = r.opt_double("rms_norm_eps", qwen ? 1e-6 : 1e-5);
  c.tie_word_embeddings = r.opt_bool("tie_word_embeddings", false);
  const std::string act = r.opt_string("hidden_act", "silu");
  SPARROW_REQUIRE(act == "silu", "{}: hidden_act \"{}\" is not supported (only silu)", src, act);

  if (qwen) {
    c.num_experts = r.req_int_any({"num_experts", "num_local_experts"});
    c.moe_intermediate_size = r.req_int("moe_intermediate_size");
    c.intermediate_size = r.req_int("intermediate_size");
    c.decoder_sparse_step = r.opt_int("decoder_sparse_step", 1);
    c.mlp_only_layers = r.opt_int_list("mlp_only_layers", {});
    c.norm_topk_prob = r.opt_bool("norm_topk_prob", false);
    c.max_position_embeddings = r.opt_int("max_position_embeddings", 32768);
    SPARROW_REQUIRE(!r.opt_bool("use_sliding_window", false),
                    "{}: use_sliding_window is not supported yet", src);
    if (c.model_type == "qwen3_moe") {
      c.attention_bias = c.o_proj_bias = r.opt_bool("attention_bias", false);
      c.qk_norm = QKNorm::kPerHead;
    } else {
      c.shared_expert_intermediate_size = r.req_int("shared_expert_intermediate_size");
      c.attention_bias = r.opt_bool("qkv_bias", true);  // Qwen2-MoE: q/k/v bias, o none
      c.o_proj_bias = false;
    }
    read_rope(r, 10000.0, c);
  } else if (c.model_type == "mixtral") {
    c.num_experts = r.req_int_any({"num_local_experts", "num_experts"});
    c.moe_intermediate_size = c.intermediate_size = r.req_int("intermediate_size");
    c.norm_topk_prob = true;  // MixtralTopKRouter always renormalizes the top-k softmax
    c.max_position_embeddings = r.opt_int("max_position_embeddings", 4096 * 32);
    SPARROW_REQUIRE(!find(j, "sliding_window"),
                    "{}: sliding_window {} is not supported yet (only null)", src,
                    j["sliding_window"].dump());
    read_rope(r, 1e6, c);  // MixtralConfig.default_theta
  } else {                 // olmoe
    c.num_experts = r.req_int_any({"num_experts", "num_local_experts"});
    c.moe_intermediate_size = c.intermediate_size = r.req_int("intermediate_size");
    c.norm_topk_prob = r.opt_bool("norm_topk_prob", false);
    c.attention_bias = c.o_proj_bias = r.opt_bool("attention_bias", false);
    c.qk_norm = QKNorm::kProjection;
    c.max_position_embeddings = r.opt_int("max_position_embeddings", 4096);
    SPARROW_REQUIRE(!find(j, "clip_qkv"), "{}: clip_qkv {} is not supported yet (only null)", src,
                    j["clip_qkv"].dump());
    // OLMoE sizes k_norm by hidden_size / num_heads, not head_dim: they must agree.
    SPARROW_REQUIRE(c.head_dim * c.num_heads == c.hidden_size,
                    "{}: olmoe needs head_dim * num_attention_heads == hidden_size", src);
    read_rope(r, 10000.0, c);
  }

  // Special tokens: HF class defaults where the class has one.
  const bool mixtral = c.model_type == "mixtral", olmoe = c.model_type == "olmoe";
  c.eos_token_ids = r.opt_int_list(
      "eos_token_id", mixtral ? std::vector<int64_t>{2}
                              : olmoe ? std::vector<int64_t>{50279} : std::vector<int64_t>{});
  c.bos_token_id = r.opt_int("bos_token_id", mixtral ? 1 : -1);
  c.pad_token_id = r.opt_int("pad_token_id", olmoe ? 1 : -1);

  check_sane(c, src);
  return c;
}

ModelConfig ModelConfig::from_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  SPARROW_REQUIRE(in, "cannot open {}", path);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  SPARROW_REQUIRE(!j.is_discarded(), "{}: not valid JSON", path);
  return from_json(j, path);
}

}  // namespace sparrow
