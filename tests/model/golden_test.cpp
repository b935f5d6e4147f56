// The model against Hugging Face transformers: tiny random models of every supported
// architecture, with goldens made by python/make_test_models.py (fp32 reference over
// bf16-rounded weights). Checks teacher-forced logprobs at every position, greedy
// continuations up to the first near-tie, and that batching does not change results.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <string>

#include "sparrow/engine/sync_generate.h"
#include "sparrow/model/model.h"

namespace sparrow {
namespace {

using nlohmann::json;

struct Case {
  std::string model;
  DType dtype;
};

std::string model_dir(const std::string& name) { return std::string(SPARROW_TESTDATA_DIR) + "/models/" + name; }

json read_golden(const std::string& name) {
  std::ifstream f(model_dir(name) + "/golden.json");
  EXPECT_TRUE(f.good()) << "missing golden for " << name;
  return json::parse(f);
}

// A greedy request for a golden prompt; with `logprobs`, every input and output logprob.
Request greedy(const json& prompt, int32_t max_new, bool logprobs) {
  Request r;
  r.input_ids = prompt["input_ids"].get<std::vector<int32_t>>();
  r.sampling.max_new_tokens = max_new;
  r.sampling.temperature = 0;
  r.sampling.ignore_eos = true;
  r.return_logprob = logprobs;
  r.logprob_start_len = logprobs ? 0 : -1;
  return r;
}

class GoldenTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override { golden_ = read_golden(GetParam().model); }
  // kv_f32: keep the KV cache in fp32 (weights stay in the case's dtype).
  std::unique_ptr<Engine> engine(int64_t chunked_prefill = 8192, bool kv_f32 = false) const {
    EngineOptions o;
    if (kv_f32) o.kv_cache_dtype = DType::kF32;
    o.max_total_tokens = 4096;
    o.max_running_requests = 16;
    o.chunked_prefill_size = chunked_prefill;
    o.log_interval_s = 0;
    return std::make_unique<Engine>(load_model_source(model_dir(GetParam().model), "auto", GetParam().dtype), nullptr, o);
  }
  static GenerateResult run1(Engine& e, Request r) { return generate_sync(e, {std::move(r)})[0].result; }
  static std::vector<GenerateResult> run(Engine& e, std::vector<Request> rs) {
    std::vector<GenerateResult> out;
    for (auto& o : generate_sync(e, std::move(rs))) out.push_back(o.result);
    return out;
  }
  bool fp32() const { return GetParam().dtype == DType::kF32; }
  json golden_;
};

TEST_P(GoldenTest, TeacherForcedLogprobsMatchTransformers) {
  auto engine_ = engine();
  double sum = 0, worst = 0;
  int64_t count = 0;
  for (const json& p : golden_["prompts"]) {
    Request r = greedy(p, 1, true);
    r.top_logprobs_num = 5;
    const GenerateResult res = run1(*engine_, r);
    const json& want = p["input_logprobs"];
    ASSERT_EQ(res.input_token_logprobs.size(), want.size());
    EXPECT_FALSE(res.input_token_logprobs[0].logprob.has_value());
    for (size_t i = 1; i < want.size(); ++i) {
      const double d = std::fabs(double(*res.input_token_logprobs[i].logprob) - want[i].get<double>());
      sum += d;
      worst = std::max(worst, d);
      ++count;
    }
    // Top-5 alternatives at every position: where the reference's top-1 is clear of its
    // runner-up, ours agrees on the id; the top-1 logprob is held to the same tolerance.
    const json& top5 = p["top5"];
    for (size_t i = 0; i < top5.size(); ++i) {
      const std::vector<TokenLogprob>& ours =
          i + 1 < top5.size() ? *res.input_top_logprobs[i + 1] : res.output_top_logprobs.at(0);
      ASSERT_EQ(ours.size(), 5u);
      const double margin = top5[i][0][1].get<double>() - top5[i][1][1].get<double>();
      if (margin >= 0.05) {
        EXPECT_EQ(ours[0].token_id, top5[i][0][0].get<int32_t>()) << "position " << i;
      }
      const double d = std::fabs(double(ours[0].logprob) - top5[i][0][1].get<double>());
      if (ours[0].token_id == top5[i][0][0].get<int32_t>()) worst = std::max(worst, d);
    }
  }
  ASSERT_GT(count, 0);
  const double mean = sum / double(count);
  RecordProperty("mean_abs_dlogprob", std::to_string(mean));
  RecordProperty("max_abs_dlogprob", std::to_string(worst));
  std::printf("[%s %s] mean |dlogprob| %.3g, max %.3g over %lld positions\n", GetParam().model.c_str(),
              std::string(dtype_name(GetParam().dtype)).c_str(), mean, worst, (long long)count);
  if (fp32()) {
    EXPECT_LE(worst, 1e-3);
  } else {
    EXPECT_LE(mean, 0.02);
    EXPECT_LE(worst, 0.15);
  }
}

// With bf16 weights the KV cache is kept in fp32 here: bf16 KV rounding moves logprobs by up
// to ~0.08 (TeacherForced bounds it), enough to flip a near-tied router choice in these tiny
// random models and with it a later greedy token whose margin is well above 0.05.
TEST_P(GoldenTest, GreedyContinuationMatchesUntilFirstNearTie) {
  auto engine_ = engine(8192, /*kv_f32=*/true);
  for (const json& p : golden_["prompts"]) {
    const json& g = p["greedy"];
    const Request r = greedy(p, int32_t(g["output_ids"].size()), false);
    const GenerateResult res = run1(*engine_, r);
    ASSERT_EQ(res.output_ids.size(), g["output_ids"].size());
    for (size_t i = 0; i < res.output_ids.size(); ++i) {
      if (g["top2_margin"][i].get<double>() < 0.05) break;
      ASSERT_EQ(res.output_ids[i], g["output_ids"][i].get<int32_t>()) << "step " << i;
    }
  }
}

TEST_P(GoldenTest, BatchOfMixedLengthsEqualsEachSequenceAlone) {
  auto engine_ = engine();
  std::vector<Request> reqs;
  for (const json& p : golden_["prompts"]) {
    reqs.push_back(greedy(p, 8, true));
  }
  const std::vector<GenerateResult> batched = run(*engine_, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenerateResult alone = run1(*engine_, reqs[i]);
    EXPECT_EQ(alone.output_ids, batched[i].output_ids) << "prompt " << i;
    ASSERT_EQ(alone.input_token_logprobs.size(), batched[i].input_token_logprobs.size());
    // Kernels are batch-invariant by construction, so this holds bit for bit.
    for (size_t j = 1; j < alone.input_token_logprobs.size(); ++j)
      EXPECT_EQ(*alone.input_token_logprobs[j].logprob, *batched[i].input_token_logprobs[j].logprob) << i << "/" << j;
    for (size_t j = 0; j < alone.output_token_logprobs.size(); ++j)
      EXPECT_EQ(*alone.output_token_logprobs[j].logprob, *batched[i].output_token_logprobs[j].logprob) << i << "/" << j;
  }
}

TEST_P(GoldenTest, ChunkedPrefillEqualsWholePrefill) {
  auto chunked = engine(7), whole = engine();
  const json& p = golden_["prompts"].back();
  const Request r = greedy(p, 4, true);
  const GenerateResult a = run1(*chunked, r), b = run1(*whole, r);
  EXPECT_EQ(a.output_ids, b.output_ids);
  ASSERT_EQ(a.input_token_logprobs.size(), b.input_token_logprobs.size());
  for (size_t j = 1; j < a.input_token_logprobs.size(); ++j)
    EXPECT_EQ(*a.input_token_logprobs[j].logprob, *b.input_token_logprobs[j].logprob) << j;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.model + (info.param.dtype == DType::kF32 ? "_f32" : "_bf16");
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenTest,
                         ::testing::Values(Case{"qwen3_moe", DType::kF32}, Case{"qwen3_moe", DType::kBF16},
                                           Case{"qwen2_moe", DType::kF32}, Case{"qwen2_moe", DType::kBF16},
                                           Case{"mixtral", DType::kF32}, Case{"mixtral", DType::kBF16},
                                           Case{"olmoe", DType::kF32}, Case{"olmoe", DType::kBF16}),
                         case_name);

}  // namespace
}  // namespace sparrow
