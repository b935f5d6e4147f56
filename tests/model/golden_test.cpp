// The model against Hugging Face transformers: tiny random models of every supported
// architecture, with goldens made by python/make_test_models.py (fp32 reference over
// bf16-rounded weights). Checks teacher-forced logprobs at every position, greedy
// continuations up to the first near-tie, and that batching does not change results.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <string>

#include "sparrow/engine/offline_engine.h"
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

class GoldenTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    golden_ = read_golden(GetParam().model);
    loaded_ = load_model(model_dir(GetParam().model), "auto", GetParam().dtype);
  }
  bool fp32() const { return GetParam().dtype == DType::kF32; }
  json golden_;
  LoadedModel loaded_;
};

TEST_P(GoldenTest, TeacherForcedLogprobsMatchTransformers) {
  OfflineEngine engine(*loaded_.model);
  double sum = 0, worst = 0;
  int64_t count = 0;
  for (const json& p : golden_["prompts"]) {
    GenerateRequest r;
    r.input_ids = p["input_ids"].get<std::vector<int32_t>>();
    r.max_new_tokens = 1;
    r.ignore_eos = true;
    r.return_logprob = true;
    r.logprob_start_len = 0;
    r.top_logprobs_num = 5;
    const GenerateResult res = engine.generate({r})[0];
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
      if (margin >= 0.05) EXPECT_EQ(ours[0].token_id, top5[i][0][0].get<int32_t>()) << "position " << i;
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

TEST_P(GoldenTest, GreedyContinuationMatchesUntilFirstNearTie) {
  OfflineEngine engine(*loaded_.model);
  for (const json& p : golden_["prompts"]) {
    const json& g = p["greedy"];
    GenerateRequest r;
    r.input_ids = p["input_ids"].get<std::vector<int32_t>>();
    r.max_new_tokens = int32_t(g["output_ids"].size());
    r.ignore_eos = true;
    const GenerateResult res = engine.generate({r})[0];
    ASSERT_EQ(res.output_ids.size(), g["output_ids"].size());
    for (size_t i = 0; i < res.output_ids.size(); ++i) {
      if (g["top2_margin"][i].get<double>() < 0.05) break;
      ASSERT_EQ(res.output_ids[i], g["output_ids"][i].get<int32_t>()) << "step " << i;
    }
  }
}

TEST_P(GoldenTest, BatchOfMixedLengthsEqualsEachSequenceAlone) {
  OfflineEngine engine(*loaded_.model);
  std::vector<GenerateRequest> reqs;
  for (const json& p : golden_["prompts"]) {
    GenerateRequest r;
    r.input_ids = p["input_ids"].get<std::vector<int32_t>>();
    r.max_new_tokens = 8;
    r.ignore_eos = true;
    r.return_logprob = true;
    r.logprob_start_len = 0;
    reqs.push_back(r);
  }
  const std::vector<GenerateResult> batched = engine.generate(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenerateResult alone = engine.generate({reqs[i]})[0];
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
  OfflineEngineOptions opts;
  opts.max_prefill_tokens = 7;
  OfflineEngine chunked(*loaded_.model, opts), whole(*loaded_.model);
  const json& p = golden_["prompts"].back();
  GenerateRequest r;
  r.input_ids = p["input_ids"].get<std::vector<int32_t>>();
  r.max_new_tokens = 4;
  r.ignore_eos = true;
  r.return_logprob = true;
  r.logprob_start_len = 0;
  const GenerateResult a = chunked.generate({r})[0], b = whole.generate({r})[0];
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
