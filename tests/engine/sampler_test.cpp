#include "sparrow/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "sparrow/core/error.h"
#include "sparrow/kernels/ops.h"

namespace sparrow {
namespace {

std::vector<float> logits_of(std::vector<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}

TEST(Sampler, GreedyIsArgmaxWithTiesToLowerId) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  std::vector<float> l = {0.1f, 3.f, 3.f, -1.f};
  EXPECT_EQ(s.sample(l.data(), 4, p, {}), 1);
}

TEST(Sampler, FrequenciesFollowTheDistribution) {
  Sampler s;
  SamplingParams p;
  const std::vector<double> probs = {0.5, 0.25, 0.125, 0.125};
  std::vector<int> hits(4);
  const int n = 20000;
  for (int pos = 0; pos < n; ++pos) {
    auto l = logits_of(probs);
    ++hits[size_t(s.sample(l.data(), 4, p, {.seed = 7, .position = pos}))];
  }
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(hits[i] / double(n), probs[i], 0.015) << i;
}

TEST(Sampler, TemperatureSharpens) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0.5f;  // p^2 renormalized: 0.5^2 / (0.25 + 0.0625 + 2 * 0.015625) = 0.727
  const std::vector<double> probs = {0.5, 0.25, 0.125, 0.125};
  int top = 0;
  const int n = 20000;
  for (int pos = 0; pos < n; ++pos) {
    auto l = logits_of(probs);
    top += s.sample(l.data(), 4, p, {.seed = 3, .position = pos}) == 0;
  }
  EXPECT_NEAR(top / double(n), 0.25 / 0.34375, 0.015);
}

TEST(Sampler, SameSeedAndPositionDrawTheSameToken) {
  Sampler a, b;
  SamplingParams p;
  const std::vector<double> probs = {0.3, 0.3, 0.2, 0.2};
  int differ = 0;
  for (int pos = 0; pos < 200; ++pos) {
    auto l1 = logits_of(probs), l2 = logits_of(probs), l3 = logits_of(probs);
    const int32_t x = a.sample(l1.data(), 4, p, {.seed = 11, .position = pos});
    EXPECT_EQ(x, b.sample(l2.data(), 4, p, {.seed = 11, .position = pos}));
    differ += x != b.sample(l3.data(), 4, p, {.seed = 12, .position = pos});
  }
  EXPECT_GT(differ, 50);  // another seed gives another sequence
}

TEST(Sampler, TopKTopPMinPTruncate) {
  Sampler s;
  const std::vector<double> probs = {0.4, 0.3, 0.2, 0.1};
  for (int pos = 0; pos < 500; ++pos) {
    SamplingParams k;
    k.top_k = 2;
    auto l = logits_of(probs);
    EXPECT_LT(s.sample(l.data(), 4, k, {.seed = 1, .position = pos}), 2);
    SamplingParams tp;
    tp.top_p = 0.65f;  // 0.4 + 0.3 reaches it: two candidates
    l = logits_of(probs);
    EXPECT_LT(s.sample(l.data(), 4, tp, {.seed = 2, .position = pos}), 2);
    SamplingParams mp;
    mp.min_p = 0.6f;  // keeps p >= 0.24: tokens 0 and 1
    l = logits_of(probs);
    EXPECT_LT(s.sample(l.data(), 4, mp, {.seed = 3, .position = pos}), 2);
  }
}

TEST(Sampler, PenaltiesAndMinNewTokens) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 2.0f;
  std::vector<int32_t> out = {0};
  std::vector<float> l = {1.0f, 0.5f, 0.0f};
  EXPECT_EQ(s.sample(l.data(), 3, p, {.output = out}), 1);  // token 0 pushed to -1
  p = {};
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  std::vector<int32_t> prompt = {0};
  l = {1.0f, 0.6f, 0.0f};
  EXPECT_EQ(s.sample(l.data(), 3, p, {.prompt = prompt}), 1);  // 1.0 / 2 < 0.6
  p = {};
  p.temperature = 0;
  p.min_new_tokens = 2;
  std::vector<int64_t> eos = {0};
  l = {5.0f, 0.6f, 0.0f};
  EXPECT_EQ(s.sample(l.data(), 3, p, {.eos_ids = eos}), 1);
}

// samples_logits_as_given is true exactly when sample() would not change the logits
// before ops::sample_rows: the scheduler's executor-sampled steps rely on it.
TEST(Sampler, LogitsAsGivenOnlyWithoutPenaltiesOrMasks) {
  SamplingParams p;
  EXPECT_TRUE(samples_logits_as_given(p, 0));
  p.temperature = 0;
  EXPECT_TRUE(samples_logits_as_given(p, 0));
  p.min_new_tokens = 2;
  EXPECT_FALSE(samples_logits_as_given(p, 1));
  EXPECT_TRUE(samples_logits_as_given(p, 2));
  p = {};
  p.repetition_penalty = 1.1f;
  EXPECT_FALSE(samples_logits_as_given(p, 5));
  p.repetition_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  EXPECT_FALSE(samples_logits_as_given(p, 5));
  p.frequency_penalty = 0.0f;
  p.presence_penalty = 0.5f;
  EXPECT_FALSE(samples_logits_as_given(p, 5));
}

// sample() is ops::sample_rows on the masked logits with row_sampling()'s parameters.
TEST(Sampler, FinalChoiceIsSampleRows) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 3;
  p.top_p = 0.9f;
  for (int pos = 0; pos < 50; ++pos) {
    std::vector<float> l = {0.3f, 1.2f, -0.4f, 0.9f, 0.1f};
    const RowSampling rs = row_sampling(p, 5, pos);
    EXPECT_EQ(rs.seed, 5u);
    EXPECT_EQ(rs.position, pos);
    int32_t want = -1;
    ops::sample_rows(Tensor(l.data(), DType::kF32, {1, 5}), &rs, &want);
    EXPECT_EQ(s.sample(l.data(), 5, p, {.seed = 5, .position = pos}), want);
  }
}

TEST(SamplingParams, RejectsBadValues) {
  auto bad = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    EXPECT_THROW(p.validate(100), InputError);
  };
  bad([](SamplingParams& p) { p.temperature = -1; });
  bad([](SamplingParams& p) { p.temperature = NAN; });
  bad([](SamplingParams& p) { p.top_p = 0; });
  bad([](SamplingParams& p) { p.top_p = 1.5f; });
  bad([](SamplingParams& p) { p.top_k = -2; });
  bad([](SamplingParams& p) { p.min_p = -0.1f; });
  bad([](SamplingParams& p) { p.repetition_penalty = 0; });
  bad([](SamplingParams& p) { p.max_new_tokens = -1; });
  bad([](SamplingParams& p) { p.min_new_tokens = 500; });
  bad([](SamplingParams& p) { p.stop_token_ids = {100}; });
  bad([](SamplingParams& p) { p.n = 0; });
  SamplingParams ok;
  EXPECT_NO_THROW(ok.validate(100));
}

}  // namespace
}  // namespace sparrow
