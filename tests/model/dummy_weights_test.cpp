// Dummy weights: determinism (across calls, sources, thread counts, request order),
// value ranges per tensor kind, shape checks. The OLMoE-1B-7B-size run is opt-in
// (SPARROW_DUMMY_FULL=1; needs ~14 GB of RAM) and prints its time.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "sparrow/core/error.h"
#include "sparrow/core/thread_pool.h"
#include "sparrow/model/config.h"
#include "sparrow/model/weight_source.h"

namespace sparrow {
namespace {

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

TEST(DummyWeights, DeterministicAcrossSourcesAndRequestOrder) {
  auto a = make_dummy_weights(7, DType::kBF16);
  auto b = make_dummy_weights(7, DType::kBF16);
  Tensor a1 = a->get("model.layers.0.mlp.gate.weight", {64, 2048});
  Tensor a2 = a->get("model.embed_tokens.weight", {1000, 512});
  Tensor b2 = b->get("model.embed_tokens.weight", {1000, 512});  // other order
  Tensor b1 = b->get("model.layers.0.mlp.gate.weight", {64, 2048});
  EXPECT_TRUE(same_bytes(a1, b1));
  EXPECT_TRUE(same_bytes(a2, b2));
  EXPECT_EQ(a->get("model.embed_tokens.weight", {1000, 512}).data(), a2.data());  // cached
  EXPECT_NE(std::memcmp(a1.data(), a2.data(), a1.nbytes()), 0);  // names differ -> values differ
  auto c = make_dummy_weights(8, DType::kBF16);
  EXPECT_FALSE(same_bytes(a1, c->get("model.layers.0.mlp.gate.weight", {64, 2048})));
  EXPECT_EQ(a->names(), (std::vector<std::string>{"model.embed_tokens.weight",
                                                  "model.layers.0.mlp.gate.weight"}));
}

TEST(DummyWeights, IndependentOfThreadCount) {
  // Reference values computed single-threaded inside a pool job (nested parallel_for runs
  // serially), compared with the global pool's parallel fill.
  auto par = make_dummy_weights(3, DType::kF32);
  Tensor p = par->get("w", {301, 1000});  // odd sizes: chunk edges fall mid-pair
  auto ser = make_dummy_weights(3, DType::kF32);
  Tensor s;
  ThreadPool one(2);
  one.parallel_for(2, [&](int64_t b, int64_t e) {
    if (b == 0) s = ser->get("w", {301, 1000});
  });
  EXPECT_TRUE(same_bytes(p, s));
}

TEST(DummyWeights, ConcurrentRequestsGetOneTensor) {
  auto w = make_dummy_weights(1, DType::kBF16);
  std::vector<std::thread> ts;
  std::vector<void*> ptrs(4);
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&, i] { ptrs[size_t(i)] = w->get("x.weight", {256, 256}).data(); });
  for (auto& t : ts) t.join();
  for (void* p : ptrs) EXPECT_EQ(p, ptrs[0]);
}

TEST(DummyWeights, ValueRanges) {
  auto w = make_dummy_weights(11, DType::kF32);
  auto check = [&](const std::string& name, Shape shape, float lo, float hi) {
    Tensor t = w->get(name, shape);
    const float* v = t.data_as<float>();
    double sum = 0;
    float mn = 1e30f, mx = -1e30f;
    for (int64_t i = 0; i < t.numel(); ++i) {
      mn = std::min(mn, v[i]);
      mx = std::max(mx, v[i]);
      sum += v[i];
    }
    EXPECT_GE(mn, lo) << name;
    EXPECT_LE(mx, hi) << name;
    // Uses most of the range, centred.
    EXPECT_LT(mn, lo + (hi - lo) * 0.01f) << name;
    EXPECT_GT(mx, hi - (hi - lo) * 0.01f) << name;
    EXPECT_NEAR(sum / double(t.numel()), (lo + hi) / 2, (hi - lo) * 0.01) << name;
  };
  const float a = 1.f / std::sqrt(2048.f);
  check("model.layers.0.self_attn.q_proj.weight", {512, 2048}, -a, a);
  check("model.layers.0.mlp.experts.down_proj", {4, 2048, 768}, -1.f / std::sqrt(768.f),
        1.f / std::sqrt(768.f));
  check("model.embed_tokens.weight", {40, 2048}, -1.f, 1.f);  // unit range: tokens stay distinct
  check("model.layers.0.input_layernorm.weight", {20000}, 0.95f, 1.05f);
  check("model.norm.weight", {20000}, 0.95f, 1.05f);
  check("model.layers.0.self_attn.q_norm.weight", {20000}, 0.95f, 1.05f);
  check("model.layers.0.self_attn.k_proj.bias", {20000}, -0.02f, 0.02f);
}

TEST(DummyWeights, DtypesRoundTheSameValues) {
  auto f32 = make_dummy_weights(5, DType::kF32);
  Tensor ref = f32->get("t.weight", {100, 64});
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF8E4M3}) {
    auto w = make_dummy_weights(5, dt);
    Tensor t = w->get("t.weight", {100, 64});
    EXPECT_EQ(t.dtype(), dt);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float want = ref.data_as<float>()[i];
      uint64_t rounded = 0;
      store_from_f32(&rounded, dt, 0, want);  // round into the first bytes, read back
      EXPECT_EQ(load_as_f32(t.data(), dt, size_t(i)), load_as_f32(&rounded, dt, 0)) << i;
    }
  }
}

TEST(DummyWeights, Errors) {
  EXPECT_THROW(make_dummy_weights(0, DType::kI32), InputError);
  auto w = make_dummy_weights(0, DType::kBF16);
  w->get("a", {4, 4});
  try {
    w->get("a", {4, 5});
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("\"a\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(w->get("b", {-1, 4}), InputError);
  EXPECT_EQ(w->get("empty", {0, 4}).numel(), 0);
  EXPECT_TRUE(w->has("anything"));
}

// Every tensor of OLMoE-1B-7B (HF names and shapes): ~6.9B parameters.
TEST(DummyWeights, OlmoeFullSizeTiming) {
  if (!std::getenv("SPARROW_DUMMY_FULL")) GTEST_SKIP() << "set SPARROW_DUMMY_FULL=1 (needs ~14 GB)";
  std::ifstream in(std::string(SPARROW_TESTDATA_DIR) + "/configs/olmoe-1b-7b-0924.json");
  const ModelConfig c = ModelConfig::from_json(nlohmann::json::parse(in));
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.moe_intermediate_size;
  auto w = make_dummy_weights(0, DType::kBF16);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t params = 0;
  auto get = [&](const std::string& n, Shape s) { params += w->get(n, s).numel(); };
  get("model.embed_tokens.weight", {c.vocab_size, H});
  get("lm_head.weight", {c.vocab_size, H});
  get("model.norm.weight", {H});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    get(p + "input_layernorm.weight", {H});
    get(p + "post_attention_layernorm.weight", {H});
    get(p + "self_attn.q_proj.weight", {c.num_heads * D, H});
    get(p + "self_attn.k_proj.weight", {c.num_kv_heads * D, H});
    get(p + "self_attn.v_proj.weight", {c.num_kv_heads * D, H});
    get(p + "self_attn.o_proj.weight", {H, c.num_heads * D});
    get(p + "self_attn.q_norm.weight", {c.num_heads * D});
    get(p + "self_attn.k_norm.weight", {c.num_kv_heads * D});
    get(p + "mlp.gate.weight", {c.num_experts, H});
    for (int64_t e = 0; e < c.num_experts; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      get(x + "gate_proj.weight", {I, H});
      get(x + "up_proj.weight", {I, H});
      get(x + "down_proj.weight", {H, I});
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("OLMoE-1B-7B dummy bf16: %.2fB params in %.1f s on %d threads (%.0f M/s)\n",
              double(params) / 1e9, s, ThreadPool::global().size(), double(params) / s / 1e6);
  EXPECT_GT(params, 6'900'000'000);
  EXPECT_LT(s, 60.0);
}

}  // namespace
}  // namespace sparrow
