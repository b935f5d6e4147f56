// Deterministic mode end to end: one request's output ids and every logprob are
// bit-identical whether it runs alone or in a mixed batch, with any chunked-prefill size,
// after a prefix-cache hit, with seeded sampling, and on any parallel layout.
#include <gtest/gtest.h>

#include "sparrow/engine/sync_generate.h"

namespace sparrow {
namespace {

const std::string kModel = std::string(SPARROW_TESTDATA_DIR) + "/models/qwen2_moe";

std::unique_ptr<Engine> make(int tp, int dp, int ep, MoeA2ABackend a2a, int64_t chunk) {
  EngineOptions o;
  o.max_total_tokens = 2048;
  o.max_running_requests = 8;
  o.chunked_prefill_size = chunk;
  o.log_interval_s = 0;
  o.parallel.layout = {tp, dp, ep, dp > 1, 0};
  o.parallel.deterministic = true;
  o.parallel.a2a = a2a;
  return std::make_unique<Engine>(load_model_source(kModel, "auto", DType::kBF16), nullptr, o);
}

Request target(bool sampled) {
  Request r;
  for (int j = 0; j < 37; ++j) r.input_ids.push_back((j * 13 + 7) % 380);
  r.sampling.temperature = sampled ? 0.8f : 0.0f;
  r.sampling.sampling_seed = 1234;
  r.sampling.max_new_tokens = 10;
  r.sampling.ignore_eos = true;
  r.return_logprob = true;
  r.logprob_start_len = 0;
  return r;
}

std::vector<Request> noise() {
  std::vector<Request> v;
  for (int i = 0; i < 3; ++i) {
    Request r;
    for (int j = 0; j < 5 + 17 * i; ++j) r.input_ids.push_back((j * 31 + i) % 380);
    r.sampling.temperature = 0;
    r.sampling.max_new_tokens = 4 + 3 * i;
    r.sampling.ignore_eos = true;
    v.push_back(r);
  }
  return v;
}

void expect_identical(const GenerateResult& a, const GenerateResult& b, const std::string& what) {
  ASSERT_EQ(a.output_ids, b.output_ids) << what;
  ASSERT_EQ(a.output_token_logprobs.size(), b.output_token_logprobs.size()) << what;
  for (size_t i = 0; i < a.output_token_logprobs.size(); ++i)
    ASSERT_EQ(*a.output_token_logprobs[i].logprob, *b.output_token_logprobs[i].logprob) << what << " output " << i;
  ASSERT_EQ(a.input_token_logprobs.size(), b.input_token_logprobs.size()) << what;
  for (size_t i = 1; i < a.input_token_logprobs.size(); ++i)
    ASSERT_EQ(*a.input_token_logprobs[i].logprob, *b.input_token_logprobs[i].logprob) << what << " input " << i;
}

class Deterministic : public ::testing::TestWithParam<bool> {};  // param: seeded sampling

TEST_P(Deterministic, BatchChunkPrefixAndLayoutInvariant) {
  const bool sampled = GetParam();
  auto base_engine = make(1, 1, 1, MoeA2ABackend::kNone, 8192);
  const GenerateResult base = generate_sync(*base_engine, {target(sampled)})[0].result;

  // In a mixed batch.
  std::vector<Request> batch = noise();
  batch.insert(batch.begin() + 1, target(sampled));
  expect_identical(base, generate_sync(*base_engine, batch)[1].result, "mixed batch");

  // Chunked prefill of 5 tokens.
  auto chunked = make(1, 1, 1, MoeA2ABackend::kNone, 5);
  expect_identical(base, generate_sync(*chunked, {target(sampled)})[0].result, "chunked prefill");

  // Prefix-cache hit: warm the cache with a request sharing the first 30 tokens (no input
  // logprobs, so the cache is used), then ask for output logprobs only.
  Request warm = target(false);
  warm.input_ids.resize(30);
  warm.return_logprob = false;
  warm.sampling.max_new_tokens = 1;
  generate_sync(*base_engine, {warm});
  Request hit = target(sampled);
  hit.logprob_start_len = -1;
  const GenerateResult cached = generate_sync(*base_engine, {hit})[0].result;
  EXPECT_GE(cached.cached_tokens, 30);
  ASSERT_EQ(cached.output_ids, base.output_ids);
  for (size_t i = 0; i < base.output_token_logprobs.size(); ++i)
    ASSERT_EQ(*cached.output_token_logprobs[i].logprob, *base.output_token_logprobs[i].logprob) << "prefix hit, output " << i;

  // Other layouts, with noise in the batch.
  struct L { int tp, dp, ep; MoeA2ABackend a2a; };
  for (const L& l : {L{2, 1, 1, MoeA2ABackend::kNone}, L{4, 2, 2, MoeA2ABackend::kAllToAll}, L{4, 1, 4, MoeA2ABackend::kNone},
                     L{2, 2, 2, MoeA2ABackend::kNone}}) {
    auto e = make(l.tp, l.dp, l.ep, l.a2a, 7);
    std::vector<Request> b = noise();
    b.push_back(target(sampled));
    expect_identical(base, generate_sync(*e, b).back().result,
                     "tp" + std::to_string(l.tp) + " dp" + std::to_string(l.dp) + " ep" + std::to_string(l.ep));
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, Deterministic, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "seeded_sampling" : "greedy"); });

}  // namespace
}  // namespace sparrow
