// ModelConfig parsing. Expected values were checked against transformers v5
// (CONFIG_MAPPING[model_type].from_dict(json)) for every real config used here.
#include "sparrow/model/config.h"

#include <gtest/gtest.h>

#include "../common/expect_input_error.h"
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

using json = nlohmann::json;
const std::string kConfigs = std::string(SPARROW_TESTDATA_DIR) + "/configs/";

json load(const std::string& name) {
  std::ifstream in(kConfigs + name);
  return json::parse(in);
}

ModelConfig parse(const std::string& name) { return ModelConfig::from_json(load(name), name); }

using sparrow::test::input_error;

TEST(ModelConfig, Qwen3_30B_A3B) {
  const ModelConfig c = parse("qwen3-30b-a3b.json");
  EXPECT_EQ(c.model_type, "qwen3_moe");
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_layers, 48);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 128);  // explicit key, != 2048 / 32
  EXPECT_EQ(c.intermediate_size, 6144);
  EXPECT_EQ(c.moe_intermediate_size, 768);
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.top_k, 8);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.qk_norm, QKNorm::kPerHead);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.pad_token_id, -1);
  for (int64_t l = 0; l < c.num_layers; ++l) EXPECT_TRUE(c.is_moe_layer(l));
}

TEST(ModelConfig, Qwen3_235B_IntegerRopeTheta) {
  const ModelConfig c = parse("qwen3-235b-a22b.json");
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e6);
  EXPECT_EQ(c.num_layers, 94);
  EXPECT_EQ(c.num_heads, 64);
  EXPECT_EQ(c.moe_intermediate_size, 1536);
}

TEST(ModelConfig, Qwen15MoE) {
  const ModelConfig c = parse("qwen1.5-moe-a2.7b.json");
  EXPECT_EQ(c.model_type, "qwen2_moe");
  EXPECT_EQ(c.head_dim, 128);  // 2048 / 16
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.num_experts, 60);
  EXPECT_EQ(c.top_k, 4);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.shared_expert_intermediate_size, 5632);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_TRUE(c.attention_bias);  // qkv_bias defaults to true
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.qk_norm, QKNorm::kNone);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151643});
  EXPECT_EQ(c.max_position_embeddings, 8192);
}

TEST(ModelConfig, Mixtral8x7B) {
  const ModelConfig c = parse("mixtral-8x7b.json");
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.moe_intermediate_size, 14336);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_TRUE(c.norm_topk_prob);  // always renormalized
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.qk_norm, QKNorm::kNone);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_TRUE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(31));
}

TEST(ModelConfig, Olmoe) {
  const ModelConfig c = parse("olmoe-1b-7b-0924.json");
  EXPECT_EQ(c.num_experts, 64);
  EXPECT_EQ(c.top_k, 8);
  EXPECT_EQ(c.moe_intermediate_size, 1024);  // OLMoE experts use intermediate_size
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.qk_norm, QKNorm::kProjection);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e4);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{50279});
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.vocab_size, 50304);
}

TEST(ModelConfig, UnsupportedModelTypesListSupportedOnes) {
  for (const char* f : {"deepseek-v3.json", "qwen3.5-35b-a3b.json"}) {
    const std::string msg = input_error([&] { parse(f); });
    EXPECT_NE(msg.find("unsupported model_type"), std::string::npos) << msg;
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
    for (const char* t : {"qwen3_moe", "qwen2_moe", "mixtral", "olmoe"})
      EXPECT_NE(msg.find(t), std::string::npos) << msg;
  }
  EXPECT_EQ(supported_model_types(), "qwen3_moe, qwen2_moe, mixtral, olmoe");
}

TEST(ModelConfig, EveryRealConfigParsesOrIsRefusedCleanly) {
  for (const auto& p : std::filesystem::directory_iterator(kConfigs)) {
    if (p.path().extension() != ".json") continue;
    const json j = load(p.path().filename().string());
    const std::string mt = j.value("model_type", "");
    if (supported_model_types().find(mt) != std::string::npos)
      EXPECT_NO_THROW(ModelConfig::from_json(j, p.path().string())) << p.path();
    else
      EXPECT_THROW(ModelConfig::from_json(j, p.path().string()), InputError) << p.path();
  }
}

TEST(ModelConfig, RopeParametersV5AndLegacyRopeTheta) {
  json j = load("qwen3-30b-a3b.json");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 123456.0}};
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j).rope_theta, 123456.0);
  // The dict wins over a top-level key; a dict without theta falls back to the key.
  j["rope_theta"] = 7.0;
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j).rope_theta, 123456.0);
  j["rope_parameters"] = {{"rope_type", "default"}};
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j).rope_theta, 7.0);
  // Neither: the class default_theta (1e4; Mixtral 1e6).
  j.erase("rope_theta");
  j.erase("rope_parameters");
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j).rope_theta, 1e4);
  json m = load("mixtral-8x7b.json");
  m.erase("rope_theta");
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(m).rope_theta, 1e6);
  // Legacy rope_scaling with "type" is read the same way.
  j["rope_scaling"] = {{"type", "default"}, {"rope_theta", 99.0}};
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j).rope_theta, 99.0);
}

TEST(ModelConfig, RefusesUnsupportedRope) {
  json j = load("qwen3-30b-a3b.json");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1e6}};
  std::string msg = input_error([&] { ModelConfig::from_json(j, "x/config.json"); });
  EXPECT_NE(msg.find("yarn"), std::string::npos) << msg;
  EXPECT_NE(msg.find("x/config.json"), std::string::npos) << msg;
  j.erase("rope_parameters");
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
  j.erase("rope_scaling");
  j["partial_rotary_factor"] = 0.5;
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
}

TEST(ModelConfig, MissingRequiredKeyNamesKeyAndFile) {
  for (const char* key : {"hidden_size", "num_experts", "moe_intermediate_size", "vocab_size"}) {
    json j = load("qwen3-30b-a3b.json");
    j.erase(key);
    const std::string msg = input_error([&] { ModelConfig::from_json(j, "/m/config.json"); });
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_NE(msg.find("/m/config.json"), std::string::npos) << msg;
  }
  json m = load("mixtral-8x7b.json");
  m.erase("num_local_experts");
  EXPECT_NE(input_error([&] { ModelConfig::from_json(m); }).find("num_local_experts"),
            std::string::npos);
  json q2 = load("qwen1.5-moe-a2.7b.json");
  q2.erase("shared_expert_intermediate_size");
  EXPECT_THROW(ModelConfig::from_json(q2), InputError);
  json none = load("olmoe-1b-7b-0924.json");
  none.erase("model_type");
  EXPECT_NE(input_error([&] { ModelConfig::from_json(none); }).find("model_type"),
            std::string::npos);
}

TEST(ModelConfig, WrongTypesAndBadValues) {
  json j = load("qwen3-30b-a3b.json");
  j["hidden_size"] = "2048";
  EXPECT_NE(input_error([&] { ModelConfig::from_json(j); }).find("hidden_size"), std::string::npos);
  j = load("qwen3-30b-a3b.json");
  j["num_experts_per_tok"] = 129;  // > num_experts
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
  j = load("qwen3-30b-a3b.json");
  j["num_key_value_heads"] = 5;  // 32 % 5 != 0
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
  j = load("qwen3-30b-a3b.json");
  j["decoder_sparse_step"] = 0;
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
  j = load("qwen3-30b-a3b.json");
  j["use_sliding_window"] = true;
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
  json m = load("mixtral-8x7b.json");
  m["sliding_window"] = 4096;
  EXPECT_THROW(ModelConfig::from_json(m), InputError);
  json o = load("olmoe-1b-7b-0924.json");
  o["clip_qkv"] = 8.0;
  EXPECT_THROW(ModelConfig::from_json(o), InputError);
  EXPECT_THROW(ModelConfig::from_json(json::array()), InputError);
}

TEST(ModelConfig, PerArchDefaults) {
  json q3 = load("qwen3-30b-a3b.json");
  for (const char* k : {"norm_topk_prob", "head_dim", "attention_bias", "eos_token_id", "bos_token_id",
                        "decoder_sparse_step", "mlp_only_layers", "max_position_embeddings"})
    q3.erase(k);
  ModelConfig c = ModelConfig::from_json(q3);
  EXPECT_FALSE(c.norm_topk_prob);  // HF class default, even though real configs set true
  EXPECT_EQ(c.head_dim, 2048 / 32);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.decoder_sparse_step, 1);
  q3["attention_bias"] = true;
  c = ModelConfig::from_json(q3);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_proj_bias);

  json q2 = load("qwen1.5-moe-a2.7b.json");
  q2["qkv_bias"] = false;
  EXPECT_FALSE(ModelConfig::from_json(q2).attention_bias);

  json m = load("mixtral-8x7b.json");
  m["norm_topk_prob"] = false;  // ignored, as in HF
  m.erase("eos_token_id");
  m.erase("bos_token_id");
  m.erase("max_position_embeddings");
  c = ModelConfig::from_json(m);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  m["num_experts"] = m["num_local_experts"];  // attribute_map alias
  m.erase("num_local_experts");
  EXPECT_EQ(ModelConfig::from_json(m).num_experts, 8);

  json o = load("olmoe-1b-7b-0924.json");
  o.erase("num_key_value_heads");
  o.erase("norm_topk_prob");
  o.erase("pad_token_id");
  o["attention_bias"] = true;
  c = ModelConfig::from_json(o);
  EXPECT_EQ(c.num_kv_heads, 16);  // None -> num_attention_heads
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_proj_bias);
}

TEST(ModelConfig, EosList) {
  json j = load("qwen3-30b-a3b.json");
  j["eos_token_id"] = {151645, 151643};
  EXPECT_EQ(ModelConfig::from_json(j).eos_token_ids, (std::vector<int64_t>{151645, 151643}));
  j["eos_token_id"] = "x";
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
}

TEST(ModelConfig, MoeLayerSelectionMatchesHF) {
  json j = load("qwen3-30b-a3b.json");
  j["num_hidden_layers"] = 8;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {5};
  ModelConfig c = ModelConfig::from_json(j);
  // (layer + 1) % 2 == 0 and not in mlp_only_layers: 1, 3, 7.
  std::vector<bool> moe;
  for (int64_t l = 0; l < 8; ++l) moe.push_back(c.is_moe_layer(l));
  EXPECT_EQ(moe, (std::vector<bool>{false, true, false, true, false, false, false, true}));
  j["num_experts"] = 0;
  j["num_experts_per_tok"] = 0;
  c = ModelConfig::from_json(j);
  for (int64_t l = 0; l < 8; ++l) EXPECT_FALSE(c.is_moe_layer(l));
  // A dense layer needs intermediate_size.
  j.erase("intermediate_size");
  EXPECT_THROW(ModelConfig::from_json(j), InputError);
}

TEST(ModelConfig, FromDir) {
  const auto dir = std::filesystem::temp_directory_path() / "sparrow_config_test";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kConfigs + "olmoe-1b-7b-0924.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(ModelConfig::from_dir(dir.string()).model_type, "olmoe");
  {
    std::ofstream(dir / "config.json") << "{ not json";
  }
  const std::string msg = input_error([&] { ModelConfig::from_dir(dir.string()); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  std::filesystem::remove_all(dir);
  EXPECT_THROW(ModelConfig::from_dir(dir.string()), InputError);
}

}  // namespace
}  // namespace sparrow
