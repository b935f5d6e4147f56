// The serving engine's scheduling must never change results: prefix-cache hits, chunked
// prefill, retraction under KV pressure and concurrent requests all give the same tokens and
// logprobs, bit for bit (kernels are batch-invariant). Also: streaming, abort, stop ids,
// validation, and the KV pool returning to empty.
#include "sparrow/engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "sparrow/engine/sync_generate.h"
#include "sparrow/kernels/row_sampling.h"

namespace sparrow {
namespace {

const std::string kModel = std::string(SPARROW_TESTDATA_DIR) + "/models/qwen3_moe";

std::unique_ptr<Engine> make_engine(int64_t kv_tokens = 4096, int64_t chunk = 8192, bool radix = true,
                                    bool deterministic = false, bool device_logprobs = true,
                                    bool device_penalties = true, int64_t max_step_logit_edits = kMaxStepLogitEdits) {
  EngineOptions o;
  o.parallel.deterministic = deterministic;
  o.device_logprobs = device_logprobs;
  o.device_penalties = device_penalties;
  o.max_step_logit_edits = max_step_logit_edits;
  o.max_total_tokens = kv_tokens;
  o.max_running_requests = 16;
  o.chunked_prefill_size = chunk;
  o.disable_radix_cache = !radix;
  o.log_interval_s = 0;
  return std::make_unique<Engine>(load_model_source(kModel, "auto", DType::kF32), nullptr, o);
}

Request greedy(std::vector<int32_t> ids, int32_t max_new, bool logprobs = true) {
  Request r;
  r.input_ids = std::move(ids);
  r.sampling.temperature = 0;
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  r.return_logprob = logprobs;
  return r;
}

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back((i * 37 + salt * 101 + 5) % 500);
  return v;
}

void expect_same(const GenerateResult& a, const GenerateResult& b) {
  EXPECT_EQ(a.output_ids, b.output_ids);
  ASSERT_EQ(a.output_token_logprobs.size(), b.output_token_logprobs.size());
  for (size_t i = 0; i < a.output_token_logprobs.size(); ++i)
    EXPECT_EQ(*a.output_token_logprobs[i].logprob, *b.output_token_logprobs[i].logprob) << i;
}

TEST(Engine, PrefixCacheHitGivesIdenticalResults) {
  auto e = make_engine();
  const auto first = generate_sync(*e, {greedy(prompt(40, 1), 6)})[0].result;
  EXPECT_EQ(first.cached_tokens, 0);
  const auto second = generate_sync(*e, {greedy(prompt(40, 1), 6)})[0].result;
  EXPECT_EQ(second.cached_tokens, 39);
  expect_same(first, second);
  // A longer prompt sharing the prefix hits the cache for the shared part.
  auto longer = prompt(40, 1);
  longer.push_back(7);
  const auto third = generate_sync(*e, {greedy(longer, 3)})[0].result;
  EXPECT_GE(third.cached_tokens, 40);
  auto no_cache = make_engine(4096, 8192, false);
  expect_same(third, generate_sync(*no_cache, {greedy(longer, 3)})[0].result);
}

TEST(Engine, ChunkedPrefillAndConcurrencyDoNotChangeResults) {
  auto whole = make_engine(4096, 8192, false);
  auto chunked = make_engine(4096, 5, false);
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(greedy(prompt(3 + 11 * i, i), 5));
  const auto together = generate_sync(*chunked, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) expect_same(together[i].result, generate_sync(*whole, {reqs[i]})[0].result);
}

TEST(Engine, RetractionUnderKvPressureFinishesEverythingWithSameResults) {
  auto roomy = make_engine(4096);
  auto tight = make_engine(96, 32);  // far less than the 8 requests need together
  std::vector<Request> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back(greedy(prompt(20, i + 10), 24));
  const auto squeezed = generate_sync(*tight, reqs);
  EXPECT_GT(tight->stats().retractions, 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_FALSE(squeezed[i].error) << *squeezed[i].error;
    expect_same(squeezed[i].result, generate_sync(*roomy, {reqs[i]})[0].result);
  }
  EXPECT_EQ(tight->stats().kv_used, 0);
}

TEST(Engine, StreamingChunksConcatenateToTheResult) {
  auto e = make_engine();
  Request r = greedy(prompt(9, 3), 12);
  r.stream = true;
  std::mutex mu;
  std::vector<int32_t> streamed;
  GenerateResult final_result;
  std::atomic<bool> done{false};
  int chunks = 0;
  e->submit(r, [&](const OutputChunk& ch) {
    std::lock_guard<std::mutex> lock(mu);
    streamed.insert(streamed.end(), ch.new_ids.begin(), ch.new_ids.end());
    ++chunks;
    if (ch.finished) {
      final_result = ch.result;
      done = true;
    }
  });
  while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(streamed, final_result.output_ids);
  EXPECT_EQ(final_result.output_ids.size(), 12u);
  EXPECT_GE(chunks, 2);
}

TEST(Engine, StopTokenIdsAndMaxNewTokens) {
  auto e = make_engine();
  const auto free_run = generate_sync(*e, {greedy(prompt(9, 4), 8)})[0].result;
  Request r = greedy(prompt(9, 4), 8);
  r.sampling.stop_token_ids = {free_run.output_ids[2]};
  const auto stopped = generate_sync(*e, {r})[0].result;
  EXPECT_EQ(stopped.finish.kind, FinishReason::Kind::kStop);
  EXPECT_EQ(stopped.finish.matched, free_run.output_ids[2]);
  // Stops at the first occurrence of that id.
  const auto first = std::find(free_run.output_ids.begin(), free_run.output_ids.end(), free_run.output_ids[2]);
  EXPECT_EQ(stopped.output_ids.size(), size_t(first - free_run.output_ids.begin()) + 1);
  EXPECT_EQ(free_run.finish.kind, FinishReason::Kind::kLength);
  EXPECT_EQ(free_run.finish.length, 8);
}

TEST(Engine, AbortEndsARunningRequestAndFreesItsKv) {
  auto e = make_engine();
  Request r = greedy(prompt(10, 5), 400);
  r.rid = "victim";
  r.stream = true;
  std::atomic<bool> done{false}, aborted{false};
  std::optional<std::string> error;
  e->submit(r, [&](const OutputChunk& ch) {
    // Abort at the first streamed tokens (from the engine's own thread: queued for its next
    // loop), so the request is surely still running, however fast the machine is.
    if (!ch.finished && !aborted.exchange(true)) e->abort("victim");
    if (ch.finished) {
      error = ch.error;
      done = true;
    }
  });
  while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(*error, "aborted");
  for (int i = 0; i < 100 && e->stats().running > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(e->stats().kv_used, 0);
}

TEST(Engine, SeededSamplingIsReproducibleAcrossBatches) {
  auto e = make_engine();
  Request r;
  r.input_ids = prompt(12, 6);
  r.sampling.temperature = 0.9f;
  r.sampling.top_p = 0.95f;
  r.sampling.max_new_tokens = 10;
  r.sampling.ignore_eos = true;
  r.sampling.sampling_seed = 42;
  const auto alone = generate_sync(*e, {r})[0].result;
  std::vector<Request> batch = {greedy(prompt(30, 7), 4), r, greedy(prompt(5, 8), 9)};
  const auto in_batch = generate_sync(*e, batch)[1].result;
  EXPECT_EQ(alone.output_ids, in_batch.output_ids);
}

// Rows without penalties or masks make executor-sampled steps (the executor returns token
// ids, and output logprobs if asked; on a GPU the logits never leave the device): the same
// tokens as the sampler's path, alone or batched with a request that wants logprobs,
// greedy or seeded sampling.
TEST(Engine, ExecutorSampledStepsGiveTheSamplersTokens) {
  auto e = make_engine();
  const auto with_lp = generate_sync(*e, {greedy(prompt(30, 7), 8)})[0].result;
  const int64_t before = e->stats().executor_sampled_steps;
  const auto plain = generate_sync(*e, {greedy(prompt(30, 7), 8, /*logprobs=*/false)})[0].result;
  EXPECT_GT(e->stats().executor_sampled_steps, before);
  EXPECT_EQ(plain.output_ids, with_lp.output_ids);
  Request masked = greedy(prompt(30, 8), 8, false);
  masked.sampling.min_new_tokens = 4;  // stop ids masked for 4 steps (LogitEdits with the step)
  const auto mixed = generate_sync(*e, {greedy(prompt(30, 7), 8, false), greedy(prompt(30, 9), 8, true), masked});
  EXPECT_EQ(mixed[0].result.output_ids, with_lp.output_ids);
  EXPECT_EQ(mixed[2].result.output_ids.size(), 8u);
  Request sampled = greedy(prompt(30, 7), 12, false);
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.top_k = 40;
  sampled.sampling.top_p = 0.9f;
  sampled.sampling.sampling_seed = 77;
  Request sampled_lp = sampled;
  sampled_lp.return_logprob = true;
  const int64_t mid = e->stats().executor_sampled_steps;
  const auto direct = generate_sync(*e, {sampled})[0].result;
  EXPECT_GT(e->stats().executor_sampled_steps, mid);
  EXPECT_EQ(direct.output_ids, generate_sync(*e, {sampled_lp})[0].result.output_ids);
}

// Deterministic mode leaves penalized or masked non-greedy draws to the host sampler (the
// step's edit cap could move them between the two samplers, which may differ by an ulp);
// other draws and greedy rows, penalized or not, are the executor's, whatever the batch.
TEST(Engine, DeterministicModeSamplesPenalizedDrawsOnTheHost) {
  auto e = make_engine(4096, 8192, true, /*deterministic=*/true);
  Request sampled = greedy(prompt(20, 3), 6, false);
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.sampling_seed = 4;
  Request penalized = sampled;
  penalized.sampling.repetition_penalty = 1.2f;
  const int64_t before = e->stats().executor_sampled_steps;
  generate_sync(*e, {penalized});
  EXPECT_EQ(e->stats().executor_sampled_steps, before);
  generate_sync(*e, {sampled});
  const int64_t after_sampled = e->stats().executor_sampled_steps;
  EXPECT_GT(after_sampled, before);
  Request greedy_penalized = greedy(prompt(20, 3), 6, false);
  greedy_penalized.sampling.repetition_penalty = 1.2f;
  generate_sync(*e, {greedy_penalized});
  EXPECT_GT(e->stats().executor_sampled_steps, after_sampled);
}

void expect_same_logprobs(const GenerateResult& a, const GenerateResult& b, const std::string& what) {
  EXPECT_EQ(a.output_ids, b.output_ids) << what;
  ASSERT_EQ(a.output_token_logprobs.size(), b.output_token_logprobs.size()) << what;
  ASSERT_EQ(a.output_top_logprobs.size(), b.output_top_logprobs.size()) << what;
  ASSERT_EQ(a.output_token_ids_logprobs.size(), b.output_token_ids_logprobs.size()) << what;
  const auto same = [&](const std::vector<TokenLogprob>& x, const std::vector<TokenLogprob>& y, size_t j) {
    ASSERT_EQ(x.size(), y.size()) << what << " step " << j;
    for (size_t k = 0; k < x.size(); ++k) {
      EXPECT_EQ(x[k].token_id, y[k].token_id) << what << " step " << j << " entry " << k;
      EXPECT_EQ(x[k].logprob, y[k].logprob) << what << " step " << j << " entry " << k;
    }
  };
  for (size_t j = 0; j < a.output_token_logprobs.size(); ++j) {
    EXPECT_EQ(a.output_token_logprobs[j].token_id, b.output_token_logprobs[j].token_id) << what << " step " << j;
    EXPECT_EQ(*a.output_token_logprobs[j].logprob, *b.output_token_logprobs[j].logprob) << what << " step " << j;
    if (!a.output_top_logprobs.empty()) same(a.output_top_logprobs[j], b.output_top_logprobs[j], j);
    if (!a.output_token_ids_logprobs.empty()) same(a.output_token_ids_logprobs[j], b.output_token_ids_logprobs[j], j);
  }
  // Input (teacher-forced) logprobs: "step" -1 - j is prompt position j.
  ASSERT_EQ(a.input_token_logprobs.size(), b.input_token_logprobs.size()) << what;
  ASSERT_EQ(a.input_top_logprobs.size(), b.input_top_logprobs.size()) << what;
  ASSERT_EQ(a.input_token_ids_logprobs.size(), b.input_token_ids_logprobs.size()) << what;
  for (size_t j = 0; j < a.input_token_logprobs.size(); ++j) {
    EXPECT_EQ(a.input_token_logprobs[j].token_id, b.input_token_logprobs[j].token_id) << what << " input " << j;
    EXPECT_EQ(a.input_token_logprobs[j].logprob, b.input_token_logprobs[j].logprob) << what << " input " << j;
  }
  for (size_t j = 0; j < a.input_top_logprobs.size(); ++j) {
    ASSERT_EQ(a.input_top_logprobs[j].has_value(), b.input_top_logprobs[j].has_value()) << what << " input " << j;
    if (a.input_top_logprobs[j]) same(*a.input_top_logprobs[j], *b.input_top_logprobs[j], size_t(-1 - int64_t(j)));
  }
  for (size_t j = 0; j < a.input_token_ids_logprobs.size(); ++j)
    same(a.input_token_ids_logprobs[j], b.input_token_ids_logprobs[j], size_t(-1 - int64_t(j)));
}

// Output logprobs of executor-sampled rows (ForwardBatch::logprobs, ops::row_logprobs; on
// a GPU computed on the device) are the host path's bits on the CPU (the same log_softmax
// and top_n): tokens, logprobs, top-N and token_ids_logprob, greedy and seeded, batched
// with rows that want none; and so are input logprobs (teacher-forced prompt positions as
// forced rows, RowSampling::forced), from position 0 or from logprob_start_len, over one
// prefill step or several chunks. top_logprobs_num beyond the cap, device_logprobs off
// and deterministic mode keep the host path.
TEST(Engine, ExecutorLogprobsAreTheHostPaths) {
  std::vector<Request> reqs;
  Request r = greedy(prompt(30, 7), 8);
  r.top_logprobs_num = 5;
  r.token_ids_logprob = {1, 2, 499, 1};
  reqs.push_back(r);
  r.input_ids = prompt(25, 3);
  r.sampling.temperature = 0.9f;
  r.sampling.top_p = 0.95f;
  r.sampling.sampling_seed = 11;
  r.top_logprobs_num = kRowLogprobsMaxTop;
  reqs.push_back(r);
  reqs.push_back(greedy(prompt(20, 4), 6, /*logprobs=*/false));
  r.input_ids = prompt(12, 5);
  r.token_ids_logprob.clear();
  r.top_logprobs_num = 0;
  reqs.push_back(r);
  Request in = greedy(prompt(40, 9), 3);  // input logprobs from the first position
  in.logprob_start_len = 0;
  in.top_logprobs_num = 4;
  in.token_ids_logprob = {3, 250};
  reqs.push_back(in);
  in.input_ids = prompt(33, 2);  // from position 20, seeded output
  in.logprob_start_len = 20;
  in.sampling.temperature = 0.8f;
  in.sampling.sampling_seed = 5;
  in.token_ids_logprob.clear();
  reqs.push_back(in);
  auto dev = make_engine();
  const auto on_executor = generate_sync(*dev, reqs);
  EXPECT_GT(dev->stats().executor_logprob_steps, 0);
  const auto host = generate_sync(*make_engine(4096, 8192, true, false, /*device_logprobs=*/false), reqs);
  for (size_t i = 0; i < reqs.size(); ++i)
    expect_same_logprobs(on_executor[i].result, host[i].result, "request " + std::to_string(i));
  EXPECT_EQ(on_executor[4].result.input_token_logprobs.size(), 40u);
  EXPECT_EQ(on_executor[5].result.input_token_logprobs.size(), 13u);
  EXPECT_EQ(on_executor[5].result.input_token_logprobs[1].token_id, reqs[5].input_ids[21]);
  // Prefill in chunks of 16 tokens: the input logprobs rows of several steps.
  auto chunked_engine = make_engine(4096, 16);
  const auto chunked = generate_sync(*chunked_engine, {reqs[4], reqs[5]});
  EXPECT_GE(chunked_engine->stats().executor_logprob_steps, 3);
  const auto chunked_host =
      generate_sync(*make_engine(4096, 16, true, false, /*device_logprobs=*/false), {reqs[4], reqs[5]});
  for (size_t i = 0; i < 2; ++i)
    expect_same_logprobs(chunked[i].result, chunked_host[i].result, "chunked request " + std::to_string(4 + i));
  // Beyond the cap: the host path (its steps bring the logits back), the same results.
  Request wide = reqs[0];
  wide.top_logprobs_num = kRowLogprobsMaxTop + 1;
  const int64_t before = dev->stats().executor_logprob_steps;
  const auto w = generate_sync(*dev, {wide})[0].result;
  EXPECT_EQ(dev->stats().executor_logprob_steps, before);
  ASSERT_EQ(w.output_top_logprobs.size(), 8u);
  EXPECT_EQ(w.output_top_logprobs[0].size(), size_t(kRowLogprobsMaxTop + 1));
  EXPECT_EQ(w.output_ids, host[0].result.output_ids);
  // Sharing steps with rows on the executor, the rows beyond the cap are host rows
  // (ForwardBatch::host_rows: their logits come back, the host reports them); everything
  // is still the host path's bits, the beyond-cap request's included.
  std::vector<Request> mixed = reqs;
  mixed.push_back(wide);
  Request wide_in = reqs[4];
  wide_in.token_ids_logprob.assign(size_t(kRowLogprobsMaxIds + 1), 7);  // input logprobs beyond the cap
  mixed.push_back(wide_in);
  const int64_t before_mixed = dev->stats().executor_logprob_steps;
  const auto mixed_exec = generate_sync(*dev, mixed);
  EXPECT_GT(dev->stats().executor_logprob_steps, before_mixed);
  const auto mixed_host = generate_sync(*make_engine(4096, 8192, true, false, /*device_logprobs=*/false), mixed);
  for (size_t i = 0; i < mixed.size(); ++i)
    expect_same_logprobs(mixed_exec[i].result, mixed_host[i].result, "mixed step request " + std::to_string(i));
  EXPECT_EQ(mixed_exec[reqs.size()].result.output_top_logprobs[0].size(), size_t(kRowLogprobsMaxTop + 1));
  // Deterministic mode reports logprobs on the executor too: whether it does is the
  // request's property (its caps), not its batch's.
  auto det = make_engine(4096, 8192, true, /*deterministic=*/true);
  generate_sync(*det, {reqs[0]});
  EXPECT_GT(det->stats().executor_logprob_steps, 0);
}

// Rows with penalties or min_new_tokens masks sample on the executor (their LogitEdits
// travel with the step: ops::sample_edited_rows) and give the host path's tokens and
// output logprobs bit for bit (device_penalties off: such rows bring their logits back and
// Sampler::sample edits them): repetition over prompt and output, frequency and presence,
// min_new_tokens masking the token an unmasked run stops on, greedy and seeded, batched
// with rows that have none. The penalties change the tokens (else this proves nothing).
TEST(Engine, ExecutorPenaltiesAreTheHostPaths) {
  auto dev = make_engine();
  Request plain = greedy(prompt(30, 7), 10);
  plain.top_logprobs_num = 3;
  const auto free_run = generate_sync(*dev, {plain})[0].result;
  std::vector<Request> reqs;
  Request r = plain;
  r.sampling.repetition_penalty = 1.5f;
  reqs.push_back(r);
  r = plain;
  r.sampling.frequency_penalty = 0.8f;
  r.sampling.presence_penalty = 0.4f;
  r.sampling.temperature = 0.9f;
  r.sampling.sampling_seed = 5;
  reqs.push_back(r);
  r = plain;
  r.sampling.ignore_eos = false;
  r.sampling.stop_token_ids = {free_run.output_ids[1], free_run.output_ids[3]};
  r.sampling.min_new_tokens = 6;
  r.sampling.repetition_penalty = 0.9f;
  reqs.push_back(r);
  reqs.push_back(greedy(prompt(20, 4), 6, /*logprobs=*/false));
  reqs.back().sampling.min_new_tokens = 1;  // (its prefill may run alone: not on the host engine's executor)
  const int64_t before = dev->stats().executor_sampled_steps;
  const auto on_executor = generate_sync(*dev, reqs);
  EXPECT_GT(dev->stats().executor_sampled_steps, before);
  auto host_engine = make_engine(4096, 8192, true, false, true, /*device_penalties=*/false);
  const auto host = generate_sync(*host_engine, reqs);
  // (There the penalized rows are host rows: their logits come back and Sampler::sample
  // edits them; the unpenalized request's rows share those steps on the executor.)
  for (size_t i = 0; i < reqs.size(); ++i)
    expect_same_logprobs(on_executor[i].result, host[i].result, "request " + std::to_string(i));
  EXPECT_NE(on_executor[0].result.output_ids, free_run.output_ids);
  EXPECT_NE(on_executor[2].result.output_ids, free_run.output_ids);
  for (int j = 0; j < 6; ++j)
    for (int32_t stop : reqs[2].sampling.stop_token_ids) EXPECT_NE(on_executor[2].result.output_ids[size_t(j)], stop);
}

// A step whose penalties need more LogitEdits than the cap (the executor's buffer, here
// made small) samples its edited rows on the host: same tokens and logprobs as the host
// path, and the steps of rows with few edits still sample on the executor, as do a capped
// step's rows without edits.
TEST(Engine, StepsBeyondTheLogitEditCapSampleOnTheHost) {
  auto engine = make_engine(4096, 8192, true, false, true, true, /*max_step_logit_edits=*/8);
  Engine& capped = *engine;
  Request wide = greedy(prompt(30, 7), 6);  // repetition over 30 prompt tokens: > 8 edits every step
  wide.sampling.repetition_penalty = 1.5f;
  const int64_t before = capped.stats().executor_sampled_steps;
  const auto got = generate_sync(capped, {wide})[0].result;
  EXPECT_EQ(capped.stats().executor_sampled_steps, before);  // every step went to the host
  auto host_engine = make_engine(4096, 8192, true, false, true, /*device_penalties=*/false);
  expect_same_logprobs(got, generate_sync(*host_engine, {wide})[0].result, "capped");
  Request narrow = greedy(prompt(12, 3), 6);  // one stop id masked until 3 tokens: 1 edit
  narrow.sampling.min_new_tokens = 3;
  narrow.sampling.stop_token_ids = {5};
  const int64_t mid = capped.stats().executor_sampled_steps;
  generate_sync(capped, {narrow});
  EXPECT_GT(capped.stats().executor_sampled_steps, mid);
  // In one step with an unpenalized request: the rows with edits become host rows, the
  // other stays on the executor; the same results as the host path.
  const Request plain = greedy(prompt(15, 8), 6);
  const int64_t before_mixed = capped.stats().executor_sampled_steps;
  const auto both = generate_sync(capped, {wide, plain});
  EXPECT_GT(capped.stats().executor_sampled_steps, before_mixed);
  const auto both_host = generate_sync(*host_engine, {wide, plain});
  for (size_t i = 0; i < 2; ++i)
    expect_same_logprobs(both[i].result, both_host[i].result, "mixed step request " + std::to_string(i));
}

TEST(Engine, RejectsBadRequests) {
  auto e = make_engine(600);
  EXPECT_THROW(e->submit(greedy({}, 1), [](const OutputChunk&) {}), InputError);
  EXPECT_THROW(e->submit(greedy({1, 100000}, 1), [](const OutputChunk&) {}), InputError);
  EXPECT_THROW(e->submit(greedy(prompt(10, 1), 600), [](const OutputChunk&) {}), InputError);  // beyond context 512
  Request r = greedy(prompt(3, 1), 1);
  r.sampling.temperature = -1;
  EXPECT_THROW(e->submit(r, [](const OutputChunk&) {}), InputError);
  r = greedy(prompt(3, 1), 1);
  r.sampling.stop = {"x"};  // no tokenizer
  EXPECT_THROW(e->submit(r, [](const OutputChunk&) {}), InputError);
}

TEST(Engine, MultiNodeIsRefusedWithItsFlag) {
  EngineOptions o;
  o.max_total_tokens = 256;
  o.log_interval_s = 0;
  o.parallel.layout.tp_size = 2;
  o.parallel.nnodes = 2;
  o.parallel.dist_init_addr = "127.0.0.1:29500";
  try {
    Engine e(load_model_source(kModel, "auto", DType::kF32), nullptr, o);
    ADD_FAILURE() << "a two-node engine was built";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--nnodes 2: the engine drives the ranks of one process"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sparrow
