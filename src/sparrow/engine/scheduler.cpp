#include "sparrow/engine/scheduler.h"

#include <algorithm>

#include "sparrow/core/log.h"
#include "sparrow/core/thread_pool.h"
#include "sparrow/kernels/logprobs.h"
#include "sparrow/engine/scheduled_request.h"
#include "sparrow/kernels/ops.h"

namespace sparrow {

using Clock = std::chrono::steady_clock;

Scheduler::Scheduler(const ModelConfig& config, const Tokenizer* tokenizer, const EngineOptions& opts, int64_t kv_slots,
                     int64_t context_length, std::vector<int64_t> eos_ids)
    : config_(config), tokenizer_(tokenizer), opts_(opts), context_length_(context_length), eos_ids_(std::move(eos_ids)),
      slots_(kv_slots), rows_(opts.max_running_requests, context_length) {
  if (!opts_.disable_radix_cache) cache_ = std::make_unique<RadixCache>(slots_);
}

Scheduler::~Scheduler() {
  for (auto& q : running_) finish(*q, "server shutting down");
  for (auto& q : waiting_) finish(*q, "server shutting down");
}

void Scheduler::add(std::unique_ptr<ScheduledRequest> req) { waiting_.push_back(std::move(req)); }

// ------------------------------------------------------------------ outputs
void Scheduler::emit(ScheduledRequest& q, bool final, std::optional<std::string> error) {
  OutputChunk ch;
  ch.rid = q.r.rid;
  const auto& out = q.result.output_ids;
  if (q.r.stream || final) {
    const size_t begin = q.r.stream ? q.streamed_ids : 0;
    ch.new_ids.assign(out.begin() + long(begin), out.end());
    if (q.result.has_logprobs) {
      const auto& lp = q.result.output_token_logprobs;
      ch.new_output_logprobs.assign(lp.begin() + long(std::min(begin, lp.size())), lp.end());
      const auto& top = q.result.output_top_logprobs;
      if (!top.empty()) ch.new_output_top_logprobs.assign(top.begin() + long(std::min(begin, top.size())), top.end());
      const auto& ids = q.result.output_token_ids_logprobs;
      if (!ids.empty())
        ch.new_output_token_ids_logprobs.assign(ids.begin() + long(std::min(begin, ids.size())), ids.end());
    }
    if (q.stop) ch.new_text = q.stop->take_text(final);
    q.streamed_ids = out.size();
  }
  ch.finished = final;
  ch.error = std::move(error);
  if (final) {
    q.result.e2e_latency_s = std::chrono::duration<double>(Clock::now() - q.arrival).count();
    if (q.stop) {
      ch.text = q.stop->full_text();
      ch.matched_stop_str = q.stop->matched();
    }
    ch.result = q.result;
  }
  if (!ch.new_ids.empty() || !ch.new_text.empty() || final) q.sink(ch);
}

// ------------------------------------------------------------------ KV management
bool Scheduler::ensure_free(int64_t n) {
  if (slots_.free_slots() >= n) return true;
  if (cache_) cache_->evict(n - slots_.free_slots());
  return slots_.free_slots() >= n;
}

int64_t Scheduler::available() const { return slots_.free_slots() + (cache_ ? cache_->evictable_size() : 0); }

// Gives back a request's row and KV. With the cache on, its computed tokens are inserted
// (so a later request can reuse them); otherwise the slots are freed.
void Scheduler::release(ScheduledRequest& q, bool keep_in_cache) {
  if (q.req_slot < 0) return;
  int32_t* row = rows_.row(q.req_slot);
  if (cache_) {
    if (keep_in_cache && q.kv_len > 0) {
      cache_->insert({q.tokens.data(), size_t(q.kv_len)}, {row, size_t(q.kv_len)});
    } else if (q.kv_len > q.cache_len) {
      slots_.free(row + q.cache_len, q.kv_len - q.cache_len);
    }
    if (q.cache_node) cache_->unlock(q.cache_node);
  } else if (q.kv_len > 0) {
    slots_.free(row, q.kv_len);
  }
  q.cache_node = nullptr;
  q.cache_len = 0;
  rows_.free(q.req_slot);
  q.req_slot = -1;
  q.kv_len = 0;
}

void Scheduler::finish(ScheduledRequest& q, std::optional<std::string> error) {
  if (q.result.finish.kind == FinishReason::Kind::kLength) q.result.finish.length = int32_t(q.result.output_ids.size());
  release(q, !error.has_value());
  (error ? counters_.requests_aborted : counters_.requests_finished)++;
  emit(q, true, std::move(error));
}

void Scheduler::abort(const std::string& rid, const std::string& why) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (rid.empty() || (*it)->r.rid == rid) {
      finish(**it, why);
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = running_.begin(); it != running_.end();) {
    if (rid.empty() || (*it)->r.rid == rid) {
      finish(**it, why);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
}

void Scheduler::flush_cache() {
  if (cache_ && idle()) cache_->reset();
}

// ------------------------------------------------------------------ admission
// Sets up a waiting request for prefill: a request row, the cached prefix. False when no
// row is free.
bool Scheduler::admit(ScheduledRequest& q) {
  q.req_slot = rows_.alloc();
  if (q.req_slot < 0) return false;
  q.extend_target = int64_t(q.tokens.size());
  if (cache_) {
    // At least the last token is computed (its logits pick the next token); with input
    // logprobs, everything from logprob_start_len on is computed too.
    int64_t limit = q.extend_target - 1;
    if (q.r.return_logprob && q.r.logprob_start_len >= 0 && !q.recompute)
      limit = std::min<int64_t>(limit, std::max(q.r.logprob_start_len - 1, 0));
    RadixCache::Match m = cache_->match_prefix({q.tokens.data(), size_t(std::max<int64_t>(limit, 0))});
    cache_->lock(m.node);
    q.cache_node = m.node;
    q.cache_len = int64_t(m.slots.size());
    std::copy(m.slots.begin(), m.slots.end(), rows_.row(q.req_slot));
    q.kv_len = q.cache_len;
    if (!q.recompute) q.result.cached_tokens = int32_t(q.cache_len);
  }
  q.state = ScheduledRequest::State::kPrefilling;
  return true;
}

void Scheduler::order_waiting() {
  if (opts_.schedule_policy != SchedulePolicy::kLpm || !cache_) return;
  // Longest cached prefix first (stable: arrival order among equals).
  for (auto& q : waiting_) q->match_hint = int64_t(cache_->match_prefix(q->tokens).slots.size());
  waiting_.sort([](const auto& a, const auto& b) { return a->match_hint > b->match_hint; });
}

// ------------------------------------------------------------------ planning
void Scheduler::plan(StepPlan& plan) {
  plan.batch = ForwardBatch{};
  plan.uses.clear();
  if (!plan_extend(plan)) plan_decode(plan);
  if (plan.empty()) plan.batch.mode = ForwardMode::kIdle;
  // Each row the executor may choose (a draw, or a forced teacher-forced row) becomes a
  // RowSampling with its edits; the others are host rows: their logits come back. The
  // decision is the row's request's own (executor_may_sample), never its batch's, so a
  // request's path, and in deterministic mode its bits, do not depend on what it shares
  // the step with. A step with no executor row brings all its logits back.
  ForwardBatch& fb = plan.batch;
  std::vector<char> on_executor(plan.uses.size());
  for (size_t i = 0; i < plan.uses.size(); ++i)
    on_executor[i] = executor_may_sample(*plan.uses[i].first, plan.uses[i].second);
  const auto add_rows = [&] {
    fb.sampling.clear();
    fb.logit_edits.clear();
    fb.host_rows.clear();
    for (size_t i = 0; i < plan.uses.size(); ++i) {
      const auto& [q, pos] = plan.uses[i];
      const int32_t row = int32_t(i);
      if (!on_executor[i]) {
        fb.sampling.emplace_back().forced = 0;  // a placeholder the executor does not draw for
        fb.host_rows.push_back(row);
      } else if (teacher_forced(*q, pos)) {  // its token is the prompt's: no draw, no edits
        fb.sampling.emplace_back().forced = q->tokens[size_t(pos + 1)];
      } else {
        fb.sampling.push_back(row_sampling(q->r.sampling, q->seed, pos + 1));
        editor_.append(row, config_.vocab_size, q->r.sampling, sampling_state(*q, pos), fb.logit_edits);
      }
    }
  };
  add_rows();
  if (int64_t(fb.logit_edits.size()) > std::min(opts_.max_step_logit_edits, kMaxStepLogitEdits)) {
    // Beyond the executor's edit buffer (or the configured cap): the rows with edits (their
    // penalties and masks) are sampled on the host. (Deterministic mode samples such draws
    // on the host anyway unless greedy, whose choice is the same on both.)
    for (const LogitEdit& e : fb.logit_edits) on_executor[size_t(e.row)] = 0;
    add_rows();
  }
  bool logprobs = false;
  for (size_t i = 0; i < plan.uses.size(); ++i)
    logprobs |= on_executor[i] && row_wants_logprobs(*plan.uses[i].first, plan.uses[i].second);
  if (fb.host_rows.size() == plan.uses.size()) {  // no executor row: the plain logits step
    fb.sampling.clear();
    fb.host_rows.clear();
    logprobs = false;
  }
  if (logprobs)
    for (size_t i = 0; i < plan.uses.size(); ++i) {
      const auto& [q, pos] = plan.uses[i];
      RowLogprobs& lp = fb.logprobs.emplace_back();
      if (!on_executor[i] || !row_wants_logprobs(*q, pos)) continue;  // top_n -1: nothing for this row
      lp.top_n = q->r.top_logprobs_num;
      lp.num_ids = int32_t(q->r.token_ids_logprob.size());
      std::copy(q->r.token_ids_logprob.begin(), q->r.token_ids_logprob.end(), lp.ids);
    }
  plan.chosen.assign(plan.uses.size(), -1);
  plan.logprobs.resize(plan.batch.logprobs.size());
}

bool Scheduler::teacher_forced(const ScheduledRequest& q, int64_t pos) { return pos + 1 < int64_t(q.tokens.size()); }

bool Scheduler::row_wants_logprobs(const ScheduledRequest& q, int64_t pos) {
  if (!q.r.return_logprob) return false;
  return !teacher_forced(q, pos) || (!q.recompute && pos + 1 < q.prompt_len);  // (evaluate records the same rows)
}

bool Scheduler::executor_may_sample(const ScheduledRequest& q, int64_t pos) const {
  if (teacher_forced(q, pos)) return !row_wants_logprobs(q, pos) || executor_may_report_logprobs(q);
  const bool as_given = samples_logits_as_given(q.r.sampling, int64_t(q.result.output_ids.size()));
  // The GPU's sampler may differ from the CPU's by an ulp of expf / log (docs/numerics.md),
  // so in deterministic mode a draw must always take one path: a penalized or masked
  // non-greedy draw could be pushed to the host by the step's edit cap (plan), so those stay
  // on the host. Greedy choices are exact comparisons, the same on both.
  if (opts_.parallel.deterministic && !q.r.sampling.greedy() && !as_given) return false;
  return (!q.r.return_logprob || executor_may_report_logprobs(q)) && (opts_.device_penalties || as_given);
}

SamplingState Scheduler::sampling_state(const ScheduledRequest& q, int64_t pos) const {
  SamplingState st;
  st.prompt = {q.tokens.data(), size_t(q.prompt_len)};
  st.output = {q.result.output_ids.data(), q.result.output_ids.size()};
  st.eos_ids = eos_ids_;
  st.seed = q.seed;
  st.position = pos + 1;
  return st;
}

bool Scheduler::executor_may_report_logprobs(const ScheduledRequest& q) const {
  // ops::row_logprobs on a GPU agrees with the host's log_softmax + top_n within float
  // tolerance, not bit for bit (docs/numerics.md), and its order depends on V alone: a
  // request within RowLogprobs' caps is always reported by it, one beyond them always by
  // the host (a property of the request: deterministic mode holds).
  return opts_.device_logprobs && q.r.top_logprobs_num <= kRowLogprobsMaxTop &&
         q.r.token_ids_logprob.size() <= size_t(kRowLogprobsMaxIds);
}

bool Scheduler::plan_extend(StepPlan& plan) {
  int64_t budget = opts_.chunked_prefill_size > 0 ? opts_.chunked_prefill_size : INT64_MAX;
  ForwardBatch& fb = plan.batch;
  fb.mode = ForwardMode::kExtend;
  std::vector<int32_t> slots;
  auto add_chunk = [&](ScheduledRequest& q) -> bool {
    const int64_t n = std::min(q.extend_target - q.kv_len, budget);
    if (n <= 0) return false;
    // Keep one slot per decoding request for its next step, so admission does not starve them.
    int64_t decoding = 0;
    for (auto& r : running_) decoding += r->state == ScheduledRequest::State::kDecoding;
    if (available() - n < decoding || !ensure_free(n)) return false;
    slots.clear();
    SPARROW_CHECK(slots_.alloc(n, slots), "KV allocation after ensure_free");
    int32_t* row = rows_.row(q.req_slot);
    std::copy(slots.begin(), slots.end(), row + q.kv_len);
    const int32_t row0 = fb.num_tokens();
    fb.add_sequence(q.req_slot, int32_t(q.kv_len), q.tokens.data() + q.kv_len, slots.data(), int32_t(n));
    const bool wants_input_lp = q.r.return_logprob && q.r.logprob_start_len >= 0 && !q.recompute;
    const int64_t first_lp = wants_input_lp ? std::max<int64_t>(q.r.logprob_start_len - 1, 0) : q.extend_target - 1;
    for (int64_t p = std::max(q.kv_len, first_lp); p < q.kv_len + n; ++p) {
      // Rows for input logprobs (positions before the prompt's end), and the last row.
      if (p == q.extend_target - 1 || (wants_input_lp && p + 1 < q.prompt_len)) {
        fb.logit_rows.push_back(row0 + int32_t(p - q.kv_len));
        plan.uses.push_back({&q, p});
      }
    }
    q.kv_len += n;
    budget -= n;
    return true;
  };
  // Continue chunked prefills first, then admit waiting requests in policy order.
  for (auto& q : running_)
    if (q->state == ScheduledRequest::State::kPrefilling && budget > 0) add_chunk(*q);
  order_waiting();
  while (!waiting_.empty() && budget > 0 && int64_t(running_.size()) < opts_.max_running_requests) {
    ScheduledRequest& q = *waiting_.front();
    if (!admit(q)) break;
    if (!add_chunk(q)) {
      release(q, false);
      q.state = ScheduledRequest::State::kWaiting;
      break;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return fb.num_tokens() > 0;
}

void Scheduler::plan_decode(StepPlan& plan) {
  // Make room: one slot per decoding request; retract the newest requests if needed.
  std::vector<ScheduledRequest*> dec;
  for (auto& q : running_)
    if (q->state == ScheduledRequest::State::kDecoding) dec.push_back(q.get());
  while (!dec.empty() && !ensure_free(int64_t(dec.size()))) {
    retract(*dec.back());
    dec.pop_back();
  }
  ForwardBatch& fb = plan.batch;
  fb = ForwardBatch{};
  fb.mode = ForwardMode::kDecode;
  std::vector<int32_t> slots;
  for (ScheduledRequest* q : dec) {
    slots.clear();
    slots_.alloc(1, slots);
    const int64_t pos = int64_t(q->tokens.size()) - 1;
    rows_.row(q->req_slot)[pos] = slots[0];
    fb.add_sequence(q->req_slot, int32_t(pos), &q->tokens[size_t(pos)], slots.data(), 1);
    fb.logit_rows.push_back(fb.num_tokens() - 1);
    q->kv_len = pos + 1;
    plan.uses.push_back({q, pos});
  }
}

void Scheduler::retract(ScheduledRequest& q) {
  log(LogLevel::kInfo, "scheduler: KV pool full, retracting request {} ({} tokens) for recompute", q.r.rid, q.tokens.size());
  release(q, true);  // its computed prefix stays cached: the recompute may hit it
  q.state = ScheduledRequest::State::kWaiting;
  q.recompute = true;
  for (auto it = running_.begin(); it != running_.end(); ++it)
    if (it->get() == &q) {
      waiting_.push_front(std::move(*it));
      running_.erase(it);
      break;
    }
  ++counters_.retractions;
}

// ------------------------------------------------------------------ consuming logits
void Scheduler::finish_step(StepPlan& plan, const Tensor& logits) {
  const ForwardBatch& fb = plan.batch;
  const int64_t n = int64_t(plan.uses.size());
  // Rows are independent: log-softmax and sampling (a pass or two over the vocabulary
  // each) run on the pool, each row by one thread with its own scratch; the results are
  // recorded in row order below. The choices depend on the rows alone.
  std::vector<RowResult> results(static_cast<size_t>(n));
  std::vector<char> host(static_cast<size_t>(n), fb.sampling.empty());  // rows the host chooses from logits
  for (int32_t r : fb.host_rows) host[size_t(r)] = 1;
  const auto eval = [&](int64_t b, int64_t e) {
    thread_local Sampler sampler;
    thread_local std::vector<float> lp;
    lp.resize(size_t(config_.vocab_size));
    for (int64_t i = b; i < e; ++i) {
      float* row = host[size_t(i)] ? static_cast<float*>(logits.row_ptr(i)) : nullptr;
      const RowLogprobsOut* reported = row || fb.logprobs.empty() ? nullptr : &plan.logprobs[size_t(i)];
      results[size_t(i)] = evaluate(*plan.uses[size_t(i)].first, plan.uses[size_t(i)].second, row,
                                    plan.chosen[size_t(i)], reported, sampler, lp);
    }
  };
  if ((fb.sampling.empty() || !fb.host_rows.empty()) && n > 1) ThreadPool::global().parallel_for(n, eval);
  else eval(0, n);
  for (int64_t i = 0; i < n; ++i) apply(*plan.uses[size_t(i)].first, std::move(results[size_t(i)]));
  for (auto& q : running_)
    if (q->state == ScheduledRequest::State::kPrefilling && q->kv_len == q->extend_target)
      q->state = ScheduledRequest::State::kDecoding;
  // Stream, then retire finished requests.
  for (auto it = running_.begin(); it != running_.end();) {
    ScheduledRequest& q = **it;
    const bool done = q.result.finish.kind == FinishReason::Kind::kStop ||
                      int32_t(q.result.output_ids.size()) >= q.r.sampling.max_new_tokens ||
                      int64_t(q.tokens.size()) >= context_length_;
    if (done && q.state == ScheduledRequest::State::kDecoding) {
      finish(q, std::nullopt);
      it = running_.erase(it);
      continue;
    }
    if (q.r.stream && q.streamed_ids < q.result.output_ids.size()) emit(q, false, std::nullopt);
    ++it;
  }
  counters_.executor_sampled_steps += !fb.sampling.empty();
  counters_.executor_logprob_steps += !fb.logprobs.empty();
  if (fb.mode == ForwardMode::kExtend) counters_.prompt_tokens += fb.num_tokens();
  else if (fb.mode == ForwardMode::kDecode) counters_.generation_tokens += fb.num_tokens();
}

Scheduler::RowResult Scheduler::evaluate(const ScheduledRequest& q, int64_t pos, float* row, int32_t chosen,
                                         const RowLogprobsOut* reported, Sampler& sampler, std::vector<float>& lp) const {
  const int64_t vocab = config_.vocab_size;
  RowResult r;
  const bool want_lp = row_wants_logprobs(q, pos);
  SPARROW_CHECK(!want_lp || row || reported, "a row that wants logprobs came back without logits or row_logprobs");
  if (want_lp && row) ops::log_softmax(Tensor(row, DType::kF32, {1, vocab}), Tensor(lp.data(), DType::kF32, {1, vocab}));
  const auto record = [&](int32_t tok) {
    if (!row) {  // the executor's ops::row_logprobs of its chosen (or forced) token (executor_may_report_logprobs)
      SPARROW_CHECK(tok == chosen, "row_logprobs describe token {}, not {}", chosen, tok);
      r.logprob = LogprobEntry{reported->logprob, tok};
      if (q.r.top_logprobs_num > 0) {
        r.top.emplace();
        for (int64_t j = 0; j < std::min<int64_t>(q.r.top_logprobs_num, vocab); ++j)
          r.top->push_back({reported->top_logprobs[j], reported->top_ids[j]});
      }
      if (!q.r.token_ids_logprob.empty()) {
        r.ids.emplace();
        for (size_t j = 0; j < q.r.token_ids_logprob.size(); ++j)
          r.ids->push_back({reported->id_logprobs[j], q.r.token_ids_logprob[j]});
      }
      return;
    }
    r.logprob = LogprobEntry{lp[size_t(tok)], tok};
    if (q.r.top_logprobs_num > 0) r.top = top_n(lp.data(), vocab, q.r.top_logprobs_num);
    if (!q.r.token_ids_logprob.empty()) {
      r.ids.emplace();
      for (int32_t id : q.r.token_ids_logprob) r.ids->push_back({lp[size_t(id)], id});
    }
  };
  if (teacher_forced(q, pos)) {
    r.kind = RowResult::Kind::kTeacherForced;
    if (want_lp) record(q.tokens[size_t(pos + 1)]);
    return r;
  }
  if (int32_t(q.result.output_ids.size()) >= q.r.sampling.max_new_tokens) {
    r.kind = RowResult::Kind::kScoreOnly;
    return r;
  }
  r.token = row ? sampler.sample(row, vocab, q.r.sampling, sampling_state(q, pos)) : chosen;
  if (want_lp && r.token >= 0 && r.token < vocab) record(r.token);
  return r;
}

void Scheduler::apply(ScheduledRequest& q, RowResult&& r) {
  if (r.kind == RowResult::Kind::kTeacherForced) {
    if (r.logprob) {
      q.result.input_token_logprobs.push_back(*r.logprob);
      if (r.top) q.result.input_top_logprobs.push_back(std::move(*r.top));
      if (r.ids) q.result.input_token_ids_logprobs.push_back(std::move(*r.ids));
    }
    return;
  }
  if (r.kind == RowResult::Kind::kScoreOnly) return;
  const int32_t tok = r.token;
  SPARROW_CHECK(tok >= 0 && tok < config_.vocab_size, "sampled token {} outside the vocabulary", tok);
  q.tokens.push_back(tok);
  q.result.output_ids.push_back(tok);
  if (r.logprob) {
    q.result.output_token_logprobs.push_back(*r.logprob);
    if (r.top) q.result.output_top_logprobs.push_back(std::move(*r.top));
    if (r.ids) q.result.output_token_ids_logprobs.push_back(std::move(*r.ids));
  }
  const int32_t n_out = int32_t(q.result.output_ids.size());
  const bool eos = !q.r.sampling.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), int64_t(tok)) != eos_ids_.end();
  const auto& stop_ids = q.r.sampling.stop_token_ids;
  const bool stop_id = std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end();
  if (n_out >= q.r.sampling.min_new_tokens && (eos || stop_id)) {
    q.result.finish = {FinishReason::Kind::kStop, 0, tok, std::nullopt};
    if (q.stop) q.stop->push(tok, /*hidden=*/true);
    return;
  }
  if (q.stop && q.stop->push(tok, false) && n_out >= q.r.sampling.min_new_tokens)
    q.result.finish = {FinishReason::Kind::kStop, 0, -1, q.stop->matched()};
}

void Scheduler::add_stats(EngineStats& s) const {
  s.running += int64_t(running_.size());
  s.waiting += int64_t(waiting_.size());
  s.kv_total += slots_.num_slots();
  s.kv_cached += cache_ ? cache_->total_size() : 0;
  s.kv_used += slots_.num_slots() - slots_.free_slots() - (cache_ ? cache_->evictable_size() : 0);
  s.prompt_tokens += counters_.prompt_tokens;
  s.generation_tokens += counters_.generation_tokens;
  s.requests_finished += counters_.requests_finished;
  s.requests_aborted += counters_.requests_aborted;
  s.retractions += counters_.retractions;
  s.executor_sampled_steps += counters_.executor_sampled_steps;
  s.executor_logprob_steps += counters_.executor_logprob_steps;
}

}  // namespace sparrow
