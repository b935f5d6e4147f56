// Scheduler: the request state of one data-parallel group. Each step it plans one batch —
// an extend batch (chunks of new, partially prefilled or retracted requests) if anything
// can be admitted, else a decode step over every running request, else nothing (idle) —
// and after the model ran, consumes the logits: input logprobs, sampling, stop checks,
// streaming output, finishing. It owns the group's KV slot allocator, req_to_token rows
// and radix prefix cache; the KV memory itself lives with the ranks (ModelExecutor).
//
// Request life: waiting -> prefilling (one chunk per step) -> decoding -> finished, and
// back to waiting when retracted for lack of KV (its tokens are then recomputed).
#pragma once

#include <chrono>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "sparrow/engine/engine.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/engine/radix_cache.h"
#include "sparrow/engine/sampler.h"
#include "sparrow/engine/stop_checker.h"

namespace sparrow {

class Tokenizer;

struct ScheduledRequest;

struct StepPlan {
  ForwardBatch batch;
  // One entry per logits row: the request and the position whose next token it predicts.
  std::vector<std::pair<ScheduledRequest*, int64_t>> uses;
  // [uses.size()]: the executor's choices when batch.sampling is set.
  std::vector<int32_t> chosen;
  // [uses.size()] when batch.logprobs is set: the executor's ops::row_logprobs.
  std::vector<RowLogprobsOut> logprobs;
  bool empty() const { return batch.num_tokens() == 0; }
};

class Scheduler {
 public:
  Scheduler(const ModelConfig& config, const Tokenizer* tokenizer, const EngineOptions& opts, int64_t kv_slots,
            int64_t context_length, std::vector<int64_t> eos_ids);
  ~Scheduler();

  void add(std::unique_ptr<ScheduledRequest> req);
  // Aborts matching requests ("" = all); their sinks get a final error chunk.
  void abort(const std::string& rid, const std::string& why);
  // Drops the prefix cache when no request holds KV.
  void flush_cache();

  // Plans the next step (an empty batch when there is nothing to run).
  void plan(StepPlan& plan);
  // Consumes the logits of a planned step ([plan.uses.size(), V]), or plan.chosen when the
  // plan had the executor sample (batch.sampling).
  void finish_step(StepPlan& plan, const Tensor& logits);

  const ReqToTokenPool& table() const { return rows_; }
  int64_t load() const { return int64_t(running_.size() + waiting_.size()); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  // Adds this group's gauges and counters to `s`.
  void add_stats(EngineStats& s) const;

 private:
  bool plan_extend(StepPlan& plan);
  void plan_decode(StepPlan& plan);
  bool admit(ScheduledRequest& q);
  void release(ScheduledRequest& q, bool keep_in_cache);
  void finish(ScheduledRequest& q, std::optional<std::string> error);
  void retract(ScheduledRequest& q);
  // What one logits row yields. evaluate() reads the request only (rows are evaluated in
  // parallel); apply() records the results in row order.
  struct RowResult {
    // kTeacherForced: the row scores a known next token (input logprobs); kScoreOnly: the
    // request has all its tokens; kNext: `token` is the chosen next token.
    enum class Kind : uint8_t { kTeacherForced, kScoreOnly, kNext } kind = Kind::kNext;
    int32_t token = -1;
    std::optional<LogprobEntry> logprob;
    std::optional<std::vector<TokenLogprob>> top;  // top_logprobs_num > 0
    std::optional<std::vector<TokenLogprob>> ids;  // token_ids_logprob given
  };
  // row: the position's logits (penalties are applied in place); or null with `chosen` the
  // executor's token and `reported` its ops::row_logprobs (when the request wants logprobs).
  // `sampler` and `lp` ([V]) are the calling thread's scratch.
  RowResult evaluate(const ScheduledRequest& q, int64_t pos, float* row, int32_t chosen, const RowLogprobsOut* reported,
                     Sampler& sampler, std::vector<float>& lp) const;
  void apply(ScheduledRequest& q, RowResult&& r);
  // Whether the token after `pos` may be the executor's choice (ops::sample_edited_rows with
  // the row's LogitEdits: penalties and masks unless device_penalties is off), and its
  // output logprobs (if wanted) ops::row_logprobs' (executor_may_report_logprobs). A
  // teacher-forced position (a prompt token follows it) is a forced row there
  // (RowSampling::forced): the executor reports its input logprobs.
  bool executor_may_sample(const ScheduledRequest& q, int64_t pos) const;
  // Whether `pos` is teacher-forced (its next token is known) / wants its logprobs reported.
  static bool teacher_forced(const ScheduledRequest& q, int64_t pos);
  static bool row_wants_logprobs(const ScheduledRequest& q, int64_t pos);
  bool executor_may_report_logprobs(const ScheduledRequest& q) const;
  // What the sampler knows of `q` when it chooses the token after `pos`.
  SamplingState sampling_state(const ScheduledRequest& q, int64_t pos) const;
  void emit(ScheduledRequest& q, bool final, std::optional<std::string> error);
  bool ensure_free(int64_t n);
  int64_t available() const;
  void order_waiting();

  const ModelConfig& config_;
  const Tokenizer* tokenizer_;
  EngineOptions opts_;
  int64_t context_length_;
  std::vector<int64_t> eos_ids_;
  SlotAllocator slots_;
  ReqToTokenPool rows_;
  std::unique_ptr<RadixCache> cache_;
  std::list<std::unique_ptr<ScheduledRequest>> waiting_;
  std::vector<std::unique_ptr<ScheduledRequest>> running_;
  EngineStats counters_;
  LogitEditor editor_;  // plan()'s scratch for the executor-sampled rows' edits
};

}  // namespace sparrow
