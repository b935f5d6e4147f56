#include "sparrow/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <tuple>
#include <utility>
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

// The penalties and masks as Sampler::sample applied them before LogitEditor (its loops,
// kept here as the definition the edits must reproduce bit for bit).
void penalize_like_before(std::vector<float>& logits, const SamplingParams& p, const SamplingState& s) {
  const int64_t vocab = int64_t(logits.size());
  std::vector<int32_t> counts;
  if (p.repetition_penalty != 1.0f) {
    auto penalize = [&](int32_t t) {
      float& l = logits[size_t(t)];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    };
    counts.assign(size_t(vocab), 0);
    for (int32_t t : s.prompt) if (!counts[size_t(t)]++) penalize(t);
    for (int32_t t : s.output) if (!counts[size_t(t)]++) penalize(t);
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    counts.assign(size_t(vocab), 0);
    for (int32_t t : s.output) ++counts[size_t(t)];
    for (int32_t t : s.output) {
      if (counts[size_t(t)] == 0) continue;
      logits[size_t(t)] -= p.frequency_penalty * float(counts[size_t(t)]) + p.presence_penalty;
      counts[size_t(t)] = 0;
    }
  }
  if (int32_t(s.output.size()) < p.min_new_tokens) {
    if (!p.ignore_eos)
      for (int64_t e : s.eos_ids) if (e >= 0 && e < vocab) logits[size_t(e)] = -std::numeric_limits<float>::infinity();
    for (int32_t t : p.stop_token_ids) logits[size_t(t)] = -std::numeric_limits<float>::infinity();
  }
}

// LogitEditor + ops::apply_logit_edits give the old loops' logits bit for bit, over random
// rows: logits of both signs and zeros, tokens in the prompt, the output or both (repeated),
// every penalty alone and together, masks with and without ignore_eos, eos ids outside the
// vocabulary, stop ids that are also eos ids or outputs. Each row's entries are distinct
// tokens of that row; one editor builds many rows in a row (its scratch resets).
TEST(LogitEditor, ReproducesTheSamplersPenaltyLoops) {
  std::mt19937 rng(7);
  constexpr int64_t V = 64;
  const float reps[] = {1.0f, 1.3f, 0.7f}, freqs[] = {0.0f, 0.5f, -0.25f}, pres[] = {0.0f, 0.75f, -1.5f};
  LogitEditor editor;
  std::vector<LogitEdit> edits;
  int changed = 0, masked = 0;
  for (int trial = 0; trial < 600; ++trial) {
    SamplingParams p;
    p.repetition_penalty = reps[rng() % 3];
    p.frequency_penalty = freqs[rng() % 3];
    p.presence_penalty = pres[rng() % 3];
    p.min_new_tokens = int32_t(rng() % 6);
    p.ignore_eos = rng() % 2;
    for (int i = int(rng() % 3); i > 0; --i) p.stop_token_ids.push_back(int32_t(rng() % V));
    std::vector<int32_t> prompt, output;
    for (int i = int(rng() % 20); i > 0; --i) prompt.push_back(int32_t(rng() % V));
    for (int i = int(rng() % 8); i > 0; --i) output.push_back(int32_t(rng() % 16));  // repeats
    const std::vector<int64_t> eos = {int64_t(rng() % V), V + 3, -1};
    const SamplingState st{prompt, output, eos, 0, 0};
    std::vector<float> want(static_cast<size_t>(V));
    for (auto& l : want) l = float(int(rng() % 41) - 20) * 0.37f;  // both signs, and 0
    std::vector<float> got = want;
    penalize_like_before(want, p, st);
    const int32_t row = int32_t(trial % 3);
    edits.clear();
    editor.append(row, V, p, st, edits);
    std::set<int32_t> tokens;
    for (LogitEdit& e : edits) {
      EXPECT_EQ(e.row, row);
      EXPECT_TRUE(tokens.insert(e.token).second) << "token " << e.token << " edited twice";
      e.row = 0;  // (one row of logits here)
    }
    ops::apply_logit_edits(Tensor(got.data(), DType::kF32, {1, V}), edits.data(), int64_t(edits.size()), nullptr);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), size_t(V) * 4), 0) << "trial " << trial;
    if (samples_logits_as_given(p, int64_t(output.size()))) {
      EXPECT_TRUE(edits.empty()) << "trial " << trial;
    }
    changed += !edits.empty();
    for (float l : got) masked += std::isinf(l);
  }
  EXPECT_GT(changed, 400);
  EXPECT_GT(masked, 50);
}

// The entries themselves: a token in the prompt and the output is penalized once (rep) and
// charged frequency * count + presence; masks come after; ignore_eos spares eos ids only.
TEST(LogitEditor, OneEntryPerTokenInFirstSeenOrder) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 1.0f;
  p.min_new_tokens = 5;
  p.stop_token_ids = {9, 4};
  const std::vector<int32_t> prompt = {3, 4, 3}, output = {4, 7, 4};
  const std::vector<int64_t> eos = {8, 3};
  std::vector<LogitEdit> edits;
  LogitEditor editor;
  editor.append(2, 10, p, {prompt, output, eos, 0, 0}, edits);
  const auto key = [](const LogitEdit& e) { return std::make_tuple(e.row, e.token, e.rep, e.sub, e.mask); };
  using K = std::tuple<int32_t, int32_t, float, float, int32_t>;
  std::vector<K> got;
  for (const auto& e : edits) got.push_back(key(e));
  const std::vector<K> want = {{2, 3, 2.0f, 0.0f, 1}, {2, 4, 2.0f, 2.0f, 1}, {2, 7, 2.0f, 1.5f, 0},
                               {2, 8, 1.0f, 0.0f, 1}, {2, 9, 1.0f, 0.0f, 1}};
  EXPECT_EQ(got, want);
  p.ignore_eos = true;
  edits.clear();
  editor.append(0, 10, p, {prompt, output, eos, 0, 0}, edits);
  ASSERT_EQ(edits.size(), 4u);  // 8 is neither seen nor masked; 3 keeps its penalty only
  EXPECT_EQ(edits[0].token, 3);
  EXPECT_EQ(edits[0].mask, 0);
  EXPECT_EQ(edits[3].token, 9);
  EXPECT_EQ(edits[3].mask, 1);
  // Negative logits are multiplied, positive divided; then the subtraction.
  std::vector<float> l(10, 0.0f);
  l[3] = -1.0f, l[4] = 3.0f, l[7] = 1.0f;
  ops::apply_logit_edits(Tensor(l.data(), DType::kF32, {1, 10}), edits.data(), int64_t(edits.size()), nullptr);
  EXPECT_EQ(l[3], -2.0f);
  EXPECT_EQ(l[4], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(l[7], 0.5f - 1.5f);
  EXPECT_EQ(l[8], 0.0f);
  EXPECT_THROW(editor.append(0, 5, p, {prompt, output, eos, 0, 0}, edits), Error);  // token 7 outside V = 5
  edits.clear();
  p.stop_token_ids = {};
  editor.append(0, 10, p, {prompt, {}, {}, 0, 0}, edits);  // the throw left the scratch clean
  EXPECT_EQ(edits.size(), 2u);
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
