// The serving loop. One thread owns every piece of scheduler state (queues, KV pool,
// radix cache, request rows); other threads only touch the inbox under `mu`.
//
// Each step: take new submissions and aborts from the inbox, then run either an extend
// batch (new or retracted requests, and the continuation of a chunked prefill) or, when
// nothing can be admitted, one decode step over every running request. Requests move
//   waiting -> prefilling (chunks) -> decoding -> finished
// and back to waiting when retracted for lack of KV (their tokens so far are recomputed).
#include "sparrow/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <list>
#include <random>

#include "sparrow/core/arena.h"
#include "sparrow/core/log.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/engine/logprobs.h"
#include "sparrow/engine/radix_cache.h"
#include "sparrow/engine/sampler.h"
#include "sparrow/engine/stop_checker.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/tokenizer/incremental_detokenizer.h"
#include "sparrow/tokenizer/tokenizer.h"

namespace sparrow {
namespace {

using Clock = std::chrono::steady_clock;

enum class ReqState : uint8_t { kWaiting, kPrefilling, kDecoding };

struct Req {
  Request r;
  OutputSink sink;
  std::vector<int32_t> tokens;  // prompt + output; KV exists for tokens[0, kv_len)
  int32_t prompt_len = 0;
  int64_t kv_len = 0;
  int64_t extend_target = 0;     // tokens the current prefill must reach
  bool recompute = false;        // retracted: input logprobs were already reported
  ReqState state = ReqState::kWaiting;
  int32_t req_slot = -1;
  RadixCache::Node* cache_node = nullptr;  // locked prefix (nullptr: none)
  int64_t cache_len = 0;                   // tokens of that prefix
  uint64_t seed = 0;
  GenerateResult result;
  std::unique_ptr<IncrementalDetokenizer> detok;
  std::unique_ptr<StopChecker> stop;
  size_t streamed_ids = 0;  // output tokens already sent
  Clock::time_point arrival;
  bool aborted = false;
};

}  // namespace

struct Engine::Impl {
  Impl(LoadedModel m, const Tokenizer* tok, EngineOptions o) : loaded(std::move(m)), tokenizer(tok), opts(o) {}

  // ---- state owned by the loop thread ----
  LoadedModel loaded;
  const Tokenizer* tokenizer;
  EngineOptions opts;
  int64_t context_length = 0;
  std::unique_ptr<KVPool> kv;
  std::unique_ptr<ReqToTokenPool> rows;
  std::unique_ptr<RadixCache> cache;
  std::unique_ptr<Arena> ws;
  std::vector<int64_t> eos_ids;
  std::list<std::unique_ptr<Req>> waiting;
  std::vector<std::unique_ptr<Req>> running;  // prefilling and decoding
  Sampler sampler;
  std::vector<float> lp_row;
  Buffer logits;
  int64_t max_step_tokens = 0;
  Clock::time_point last_log = Clock::now();

  // ---- shared with other threads, under mu ----
  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<Req>> inbox;
  std::vector<std::string> abort_inbox;
  bool stopping = false;
  bool flush_requested = false;
  bool paused = false;  // update_weights in progress: the loop waits
  bool loop_idle = false;
  std::condition_variable idle_cv;
  EngineStats stats;
  std::thread thread;

  void init() {
    const ModelConfig& c = loaded.config;
    context_length = opts.context_length > 0 ? opts.context_length : std::max<int64_t>(c.max_position_embeddings, 1);
    int64_t slots = opts.max_total_tokens;
    if (slots <= 0) {
      const size_t per_token = size_t(2 * c.num_layers * c.num_kv_heads * c.head_dim) * dtype_size(loaded.dtype);
      slots = std::max<int64_t>(opts.kv_memory_bytes / int64_t(per_token), context_length);
    }
    kv = std::make_unique<KVPool>(c.num_layers, slots, c.num_kv_heads, c.head_dim, loaded.dtype);
    rows = std::make_unique<ReqToTokenPool>(opts.max_running_requests, context_length);
    if (!opts.disable_radix_cache) cache = std::make_unique<RadixCache>(*kv);
    max_step_tokens = std::max<int64_t>(opts.chunked_prefill_size > 0 ? opts.chunked_prefill_size : context_length,
                                        opts.max_running_requests);
    ws = std::make_unique<Arena>(loaded.model->workspace_bytes(max_step_tokens));
    eos_ids = c.eos_token_ids;
    if (tokenizer)
      for (int32_t id : tokenizer->stop_token_ids())
        if (std::find(eos_ids.begin(), eos_ids.end(), id) == eos_ids.end()) eos_ids.push_back(id);
    lp_row.resize(size_t(c.vocab_size));
    logits = Buffer(DType::kF32, {int64_t(opts.max_running_requests), c.vocab_size});
    stats.kv_total = slots;
    log(LogLevel::kInfo, "engine: KV pool {} tokens ({:.1f} MiB), context {}, max running {}, chunked prefill {}",
        slots, double(slots) * double(kv->bytes_per_token()) / 1048576.0, context_length, opts.max_running_requests,
        opts.chunked_prefill_size);
  }

  // ------------------------------------------------------------------ outputs
  void emit(Req& q, bool final, std::optional<std::string> error = std::nullopt) {
    OutputChunk ch;
    ch.rid = q.r.rid;
    const auto& out = q.result.output_ids;
    const size_t from = q.streamed_ids;
    if (q.r.stream || final) {
      const size_t begin = q.r.stream ? from : 0;
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
    if (!ch.new_ids.empty() || final) q.sink(ch);
  }

  // ------------------------------------------------------------------ KV management
  // Free slots, evicting cached prefixes if needed. False when `n` cannot be had.
  bool ensure_free(int64_t n) {
    if (kv->free_slots() >= n) return true;
    if (cache) cache->evict(n - kv->free_slots());
    return kv->free_slots() >= n;
  }
  int64_t available() const { return kv->free_slots() + (cache ? cache->evictable_size() : 0); }

  // Gives back a request's row and KV. With the cache on, its computed tokens are inserted
  // (so a later request can reuse them); otherwise the slots are freed.
  void release(Req& q, bool keep_in_cache) {
    if (q.req_slot < 0) return;
    int32_t* row = rows->row(q.req_slot);
    if (cache) {
      if (keep_in_cache && q.kv_len > 0) {
        cache->insert({q.tokens.data(), size_t(q.kv_len)}, {row, size_t(q.kv_len)});
      } else if (q.kv_len > q.cache_len) {
        kv->free(row + q.cache_len, q.kv_len - q.cache_len);
      }
      if (q.cache_node) cache->unlock(q.cache_node);
    } else if (q.kv_len > 0) {
      kv->free(row, q.kv_len);
    }
    q.cache_node = nullptr;
    q.cache_len = 0;
    rows->free(q.req_slot);
    q.req_slot = -1;
    q.kv_len = 0;
  }

  void finish(Req& q, std::optional<std::string> error = std::nullopt) {
    if (q.result.finish.kind == FinishReason::Kind::kLength) q.result.finish.length = int32_t(q.result.output_ids.size());
    release(q, !error.has_value());
    {
      std::lock_guard<std::mutex> lock(mu);
      (error ? stats.requests_aborted : stats.requests_finished)++;
    }
    emit(q, true, std::move(error));
  }

  // ------------------------------------------------------------------ admission
  // Sets up a waiting request for prefill: a request row, the cached prefix. False when no
  // row is free.
  bool admit(Req& q) {
    q.req_slot = rows->alloc();
    if (q.req_slot < 0) return false;
    q.extend_target = int64_t(q.tokens.size());
    if (cache) {
      // At least the last token is computed (its logits pick the next token); with input
      // logprobs, everything from logprob_start_len on is computed too.
      int64_t limit = q.extend_target - 1;
      if (q.r.return_logprob && q.r.logprob_start_len >= 0 && !q.recompute)
        limit = std::min<int64_t>(limit, std::max(q.r.logprob_start_len - 1, 0));
      RadixCache::Match m = cache->match_prefix({q.tokens.data(), size_t(std::max<int64_t>(limit, 0))});
      cache->lock(m.node);
      q.cache_node = m.node;
      q.cache_len = int64_t(m.slots.size());
      std::copy(m.slots.begin(), m.slots.end(), rows->row(q.req_slot));
      q.kv_len = q.cache_len;
      if (!q.recompute) q.result.cached_tokens = int32_t(q.cache_len);
    }
    q.state = ReqState::kPrefilling;
    return true;
  }

  void order_waiting() {
    if (opts.schedule_policy != SchedulePolicy::kLpm || !cache) return;
    // Longest cached prefix first (stable: arrival order among equals). Matching here only
    // reads the tree, so it does not lock.
    std::vector<std::pair<int64_t, Req*>> keyed;
    for (auto& q : waiting) keyed.push_back({int64_t(cache->match_prefix(q->tokens).slots.size()), q.get()});
    waiting.sort([&](const std::unique_ptr<Req>& a, const std::unique_ptr<Req>& b) {
      auto ka = std::find_if(keyed.begin(), keyed.end(), [&](auto& k) { return k.second == a.get(); })->first;
      auto kb = std::find_if(keyed.begin(), keyed.end(), [&](auto& k) { return k.second == b.get(); })->first;
      return ka > kb;
    });
  }

  // ------------------------------------------------------------------ steps
  // Builds and runs one extend batch. Returns false when there was nothing to extend.
  bool step_extend() {
    int64_t budget = opts.chunked_prefill_size > 0 ? opts.chunked_prefill_size : INT64_MAX;
    ForwardBatch fb;
    fb.mode = ForwardMode::kExtend;
    struct RowUse { Req* q; int64_t pos; };
    std::vector<RowUse> uses;
    std::vector<int32_t> slots;
    std::vector<Req*> in_batch;
    auto add_chunk = [&](Req& q) -> bool {
      const int64_t remaining = q.extend_target - q.kv_len;
      const int64_t n = std::min(remaining, budget);
      if (n <= 0) return false;
      // Keep one slot per decoding request for its next step, so admission does not starve them.
      int64_t decoding = 0;
      for (auto& r : running) decoding += r->state == ReqState::kDecoding;
      if (available() - n < decoding || !ensure_free(n)) return false;
      slots.clear();
      SPARROW_CHECK(kv->alloc(n, slots), "KV allocation after ensure_free");
      int32_t* row = rows->row(q.req_slot);
      std::copy(slots.begin(), slots.end(), row + q.kv_len);
      const int32_t row0 = fb.num_tokens();
      fb.add_sequence(q.req_slot, int32_t(q.kv_len), q.tokens.data() + q.kv_len, slots.data(), int32_t(n));
      const bool wants_input_lp = q.r.return_logprob && q.r.logprob_start_len >= 0 && !q.recompute;
      const int64_t first_lp = wants_input_lp ? std::max<int64_t>(q.r.logprob_start_len - 1, 0) : q.extend_target - 1;
      for (int64_t p = std::max(q.kv_len, first_lp); p < q.kv_len + n; ++p) {
        // Rows for input logprobs (positions before the prompt's end), and the last row.
        if (p == q.extend_target - 1 || (wants_input_lp && p + 1 < q.prompt_len)) {
          fb.logit_rows.push_back(row0 + int32_t(p - q.kv_len));
          uses.push_back({&q, p});
        }
      }
      q.kv_len += n;
      budget -= n;
      in_batch.push_back(&q);
      return true;
    };
    // Continue chunked prefills first, then admit waiting requests in policy order.
    for (auto& q : running)
      if (q->state == ReqState::kPrefilling && budget > 0) add_chunk(*q);
    order_waiting();
    while (!waiting.empty() && budget > 0 && int64_t(running.size()) < opts.max_running_requests) {
      Req& q = *waiting.front();
      if (!admit(q)) break;
      if (!add_chunk(q)) {
        release(q, false);
        q.state = ReqState::kWaiting;
        break;
      }
      running.push_back(std::move(waiting.front()));
      waiting.pop_front();
    }
    if (fb.num_tokens() == 0) return false;
    run_forward(fb, uses);
    return true;
  }

  void step_decode() {
    // Make room: one slot per decoding request; retract the newest requests if needed.
    std::vector<Req*> dec;
    for (auto& q : running)
      if (q->state == ReqState::kDecoding) dec.push_back(q.get());
    if (dec.empty()) return;
    while (!ensure_free(int64_t(dec.size())) && dec.size() > 1) retract(*dec.back()), dec.pop_back();
    if (!ensure_free(int64_t(dec.size()))) {
      // A single request that cannot grow: the pool is smaller than its context (validated
      // at submit, so only when others hold the rest). Retract it too.
      retract(*dec.back());
      return;
    }
    ForwardBatch fb;
    fb.mode = ForwardMode::kDecode;
    std::vector<int32_t> slots;
    struct RowUse { Req* q; int64_t pos; };
    std::vector<RowUse> uses;
    for (Req* q : dec) {
      slots.clear();
      kv->alloc(1, slots);
      const int64_t pos = int64_t(q->tokens.size()) - 1;
      rows->row(q->req_slot)[pos] = slots[0];
      fb.add_sequence(q->req_slot, int32_t(pos), &q->tokens[size_t(pos)], slots.data(), 1);
      fb.logit_rows.push_back(fb.num_tokens() - 1);
      q->kv_len = pos + 1;
      uses.push_back({q, pos});
    }
    std::vector<std::pair<Req*, int64_t>> u;
    for (auto& x : uses) u.push_back({x.q, x.pos});
    run_rows(fb, u);
  }

  template <typename Uses>
  void run_forward(const ForwardBatch& fb, const Uses& uses) {
    std::vector<std::pair<Req*, int64_t>> u;
    for (auto& x : uses) u.push_back({x.q, x.pos});
    run_rows(fb, u);
  }

  // Runs the model and consumes each logits row: an input logprob, or the next token.
  void run_rows(const ForwardBatch& fb, const std::vector<std::pair<Req*, int64_t>>& uses) {
    const int64_t vocab = loaded.config.vocab_size;
    const int64_t nrows = int64_t(fb.logit_rows.size());
    if (logits.tensor().size(0) < nrows) logits = Buffer(DType::kF32, {nrows, vocab});  // prefill with input logprobs
    const Tensor lg = logits.tensor().slice_rows(0, nrows);
    const auto t0 = Clock::now();
    loaded.model->forward(fb, *kv, *rows, *ws, lg);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    for (size_t i = 0; i < uses.size(); ++i) consume(*uses[i].first, uses[i].second, static_cast<float*>(lg.row_ptr(int64_t(i))));
    std::vector<Req*> done;
    for (auto& q : running)
      if (q->state == ReqState::kPrefilling && q->kv_len == q->extend_target) q->state = ReqState::kDecoding;
    // Stream, then retire finished requests.
    for (auto it = running.begin(); it != running.end();) {
      Req& q = **it;
      if (q.result.finish.kind == FinishReason::Kind::kStop || q.aborted ||
          int32_t(q.result.output_ids.size()) >= q.r.sampling.max_new_tokens || finished_by_length(q)) {
        if (q.state == ReqState::kDecoding || q.aborted) {
          finish(q, q.aborted ? std::optional<std::string>("aborted") : std::nullopt);
          it = running.erase(it);
          continue;
        }
      }
      if (q.r.stream && q.streamed_ids < q.result.output_ids.size()) emit(q, false);
      ++it;
    }
    std::lock_guard<std::mutex> lock(mu);
    stats.last_step_tokens_per_s = double(fb.num_tokens()) / std::max(secs, 1e-9);
    if (fb.mode == ForwardMode::kExtend) stats.prompt_tokens += fb.num_tokens();
    else stats.generation_tokens += fb.num_tokens();
    maybe_log(fb, secs);
  }

  bool finished_by_length(const Req& q) const { return int64_t(q.tokens.size()) >= context_length; }

  void consume(Req& q, int64_t pos, float* row) {
    const int64_t vocab = loaded.config.vocab_size;
    const bool want_lp = q.r.return_logprob;
    if (want_lp) {
      ops::log_softmax(Tensor(row, DType::kF32, {1, vocab}), Tensor(lp_row.data(), DType::kF32, {1, vocab}));
    }
    if (pos + 1 < int64_t(q.tokens.size())) {  // teacher-forced position
      if (want_lp && !q.recompute && pos + 1 < q.prompt_len) {
        const int32_t tok = q.tokens[size_t(pos + 1)];
        q.result.input_token_logprobs.push_back({lp_row[size_t(tok)], tok});
        if (q.r.top_logprobs_num > 0) q.result.input_top_logprobs.push_back(top_n(lp_row.data(), vocab, q.r.top_logprobs_num));
        if (!q.r.token_ids_logprob.empty()) q.result.input_token_ids_logprobs.push_back(ids_logprobs(q));
      }
      return;
    }
    if (int32_t(q.result.output_ids.size()) >= q.r.sampling.max_new_tokens) return;  // score only
    SamplingState st;
    st.prompt = {q.tokens.data(), size_t(q.prompt_len)};
    st.output = {q.result.output_ids.data(), q.result.output_ids.size()};
    st.eos_ids = eos_ids;
    st.seed = q.seed;
    st.position = pos + 1;
    const int32_t tok = sampler.sample(row, vocab, q.r.sampling, st);
    q.tokens.push_back(tok);
    q.result.output_ids.push_back(tok);
    if (want_lp) {
      q.result.output_token_logprobs.push_back({lp_row[size_t(tok)], tok});
      if (q.r.top_logprobs_num > 0) q.result.output_top_logprobs.push_back(top_n(lp_row.data(), vocab, q.r.top_logprobs_num));
      if (!q.r.token_ids_logprob.empty()) q.result.output_token_ids_logprobs.push_back(ids_logprobs(q));
    }
    const int32_t n_out = int32_t(q.result.output_ids.size());
    const bool eos = !q.r.sampling.ignore_eos && std::find(eos_ids.begin(), eos_ids.end(), int64_t(tok)) != eos_ids.end();
    const auto& stop_ids = q.r.sampling.stop_token_ids;
    const bool stop_id = std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end();
    if (n_out >= q.r.sampling.min_new_tokens && (eos || stop_id)) {
      q.result.finish = {FinishReason::Kind::kStop, 0, tok};
      if (q.stop) q.stop->push(tok, /*hidden=*/true);
      return;
    }
    if (q.stop && q.stop->push(tok, false) && n_out >= q.r.sampling.min_new_tokens) {
      q.result.finish = {FinishReason::Kind::kStop, 0, -1, q.stop->matched()};
    }
  }

  std::vector<TokenLogprob> ids_logprobs(const Req& q) const {
    std::vector<TokenLogprob> v;
    for (int32_t id : q.r.token_ids_logprob) v.push_back({lp_row[size_t(id)], id});
    return v;
  }

  void retract(Req& q) {
    log(LogLevel::kInfo, "engine: KV pool full, retracting request {} ({} tokens) for recompute", q.r.rid, q.tokens.size());
    release(q, true);  // its computed prefix stays cached: recompute may hit it
    q.state = ReqState::kWaiting;
    q.recompute = true;
    for (auto it = running.begin(); it != running.end(); ++it)
      if (it->get() == &q) {
        waiting.push_front(std::move(*it));
        running.erase(it);
        break;
      }
    std::lock_guard<std::mutex> lock(mu);
    ++stats.retractions;
  }

  void maybe_log(const ForwardBatch& fb, double secs) {
    if (opts.log_interval_s <= 0) return;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_log).count() < opts.log_interval_s) return;
    last_log = now;
    log(LogLevel::kInfo, "step: {} batch {} tokens {} running {} waiting {} | KV used {:.1f}% cached {} | {:.0f} tok/s",
        fb.mode == ForwardMode::kExtend ? "extend" : "decode", fb.batch_size(), fb.num_tokens(), running.size(),
        waiting.size(), 100.0 * double(kv->num_slots() - kv->free_slots()) / double(kv->num_slots()),
        cache ? cache->total_size() : 0, double(fb.num_tokens()) / std::max(secs, 1e-9));
  }

  // ------------------------------------------------------------------ loop
  void handle_inbox() {
    std::vector<std::unique_ptr<Req>> fresh;
    std::vector<std::string> aborts;
    bool flush = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      fresh.swap(inbox);
      aborts.swap(abort_inbox);
      flush = flush_requested;
      flush_requested = false;
    }
    for (auto& q : fresh) waiting.push_back(std::move(q));
    for (const std::string& rid : aborts) {
      for (auto it = waiting.begin(); it != waiting.end();) {
        if (rid.empty() || (*it)->r.rid == rid) {
          (*it)->aborted = true;
          release(**it, false);
          finish(**it, "aborted");
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
      for (auto it = running.begin(); it != running.end();) {
        if (rid.empty() || (*it)->r.rid == rid) {
          finish(**it, "aborted");
          it = running.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (flush && cache && running.empty() && waiting.empty()) cache->reset();
    update_gauges();
  }

  void update_gauges() {
    std::lock_guard<std::mutex> lock(mu);
    stats.running = int64_t(running.size());
    stats.waiting = int64_t(waiting.size());
    stats.kv_used = kv->num_slots() - kv->free_slots() - (cache ? cache->evictable_size() : 0);
    stats.kv_cached = cache ? cache->total_size() : 0;
  }

  void loop() {
    bool is_paused = false;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        // Aborts are handled even while paused (update_weights waits for them to be done).
        const auto has_work = [&] {
          return stopping || !abort_inbox.empty() ||
                 (!paused && (!inbox.empty() || flush_requested || !running.empty() || !waiting.empty()));
        };
        loop_idle = true;
        idle_cv.notify_all();
        cv.wait(lock, has_work);
        loop_idle = false;
        if (stopping) break;
        is_paused = paused;
      }
      try {
        handle_inbox();
        if (!is_paused && !step_extend()) step_decode();
        update_gauges();
      } catch (const std::exception& e) {
        // A failure inside a step fails the requests in it, never the server.
        log(LogLevel::kError, "engine step failed: {}", e.what());
        for (auto& q : running) finish(*q, std::string("internal error: ") + e.what());
        running.clear();
      }
    }
    for (auto& q : running) finish(*q, "server shutting down");
    for (auto& q : waiting) finish(*q, "server shutting down");
    running.clear();
    waiting.clear();
  }
};

Engine::Engine(LoadedModel model, const Tokenizer* tokenizer, EngineOptions opts)
    : impl_(std::make_unique<Impl>(std::move(model), tokenizer, opts)) {
  impl_->init();
  model_path_ = impl_->loaded.path;
  context_length_ = impl_->context_length;
  impl_->thread = std::thread([this] { impl_->loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

void Engine::submit(Request req, OutputSink sink) {
  const ModelConfig& c = impl_->loaded.config;
  SPARROW_REQUIRE(!req.input_ids.empty(), "the prompt is empty");
  for (int32_t id : req.input_ids)
    SPARROW_REQUIRE(id >= 0 && id < c.vocab_size, "token id {} is outside the vocabulary [0, {})", id, c.vocab_size);
  req.sampling.validate(c.vocab_size);
  const int64_t prompt = int64_t(req.input_ids.size());
  SPARROW_REQUIRE(prompt < context_length_, "the prompt has {} tokens, more than the context length {} allows", prompt, context_length_);
  SPARROW_REQUIRE(prompt + req.sampling.max_new_tokens <= context_length_,
                  "prompt ({} tokens) + max_new_tokens ({}) exceeds the context length {}", prompt,
                  req.sampling.max_new_tokens, context_length_);
  SPARROW_REQUIRE(prompt + req.sampling.max_new_tokens <= impl_->kv->num_slots(),
                  "prompt + max_new_tokens ({}) exceeds the KV pool ({} tokens)", prompt + req.sampling.max_new_tokens,
                  impl_->kv->num_slots());
  SPARROW_REQUIRE(req.logprob_start_len >= -1 && req.logprob_start_len < prompt,
                  "logprob_start_len {} must be in [-1, {})", req.logprob_start_len, prompt);
  SPARROW_REQUIRE(req.top_logprobs_num >= 0 && req.top_logprobs_num <= 1000, "top_logprobs_num must be in [0, 1000]");
  for (int32_t id : req.token_ids_logprob)
    SPARROW_REQUIRE(id >= 0 && id < c.vocab_size, "token_ids_logprob: {} is outside the vocabulary", id);
  if (!req.sampling.stop.empty())
    SPARROW_REQUIRE(impl_->tokenizer, "stop strings need a tokenizer (the server runs with --skip-tokenizer-init)");

  auto q = std::make_unique<Req>();
  q->tokens = req.input_ids;
  q->prompt_len = int32_t(prompt);
  q->arrival = Clock::now();
  q->seed = req.sampling.sampling_seed ? *req.sampling.sampling_seed : std::random_device{}();
  q->result.rid = req.rid;
  q->result.prompt_tokens = int32_t(prompt);
  q->result.has_logprobs = req.return_logprob;
  q->result.has_top_logprobs = req.return_logprob && req.top_logprobs_num > 0;
  if (req.return_logprob && req.logprob_start_len == 0) {
    q->result.input_token_logprobs.push_back({std::nullopt, req.input_ids[0]});
    if (req.top_logprobs_num > 0) q->result.input_top_logprobs.push_back(std::nullopt);
    if (!req.token_ids_logprob.empty()) q->result.input_token_ids_logprobs.emplace_back();
  }
  q->result.has_token_ids_logprobs = req.return_logprob && !req.token_ids_logprob.empty();
  if (impl_->tokenizer)
    q->stop = std::make_unique<StopChecker>(*impl_->tokenizer, req.sampling.stop, req.sampling.skip_special_tokens);
  q->r = std::move(req);
  q->sink = std::move(sink);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    SPARROW_REQUIRE(!impl_->stopping, "the server is shutting down");
    impl_->inbox.push_back(std::move(q));
  }
  impl_->cv.notify_all();
}

bool Engine::abort(const std::string& rid) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->abort_inbox.push_back(rid);
  }
  impl_->cv.notify_all();
  return true;
}

bool Engine::flush_cache() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  if (impl_->stats.running > 0 || impl_->stats.waiting > 0 || !impl_->inbox.empty()) return false;
  impl_->flush_requested = true;
  impl_->cv.notify_all();
  return true;
}

void Engine::update_weights_from_disk(const std::string& model_path, const std::string& load_format) {
  Impl& s = *impl_;
  // Load the new weights first, off the loop: a bad path leaves everything as it was.
  LoadedModel fresh = load_model(model_path, load_format.empty() ? "auto" : load_format, s.loaded.dtype, s.loaded.seed);
  const ModelConfig& a = s.loaded.config;
  const ModelConfig& b = fresh.config;
  SPARROW_REQUIRE(a.model_type == b.model_type && a.hidden_size == b.hidden_size && a.num_layers == b.num_layers &&
                      a.vocab_size == b.vocab_size && a.num_experts == b.num_experts && a.num_kv_heads == b.num_kv_heads &&
                      a.head_dim == b.head_dim,
                  "update_weights_from_disk: {} has a different architecture than the served model", model_path);
  abort("");
  std::unique_lock<std::mutex> lock(s.mu);
  s.paused = true;
  s.cv.notify_all();
  // Parked and the abort done. Requests submitted meanwhile wait in the inbox for the new weights.
  s.idle_cv.wait(lock, [&] { return s.loop_idle && s.abort_inbox.empty(); });
  // The loop is parked in its wait: swapping is safe.
  s.loaded = std::move(fresh);
  if (s.cache && s.running.empty() && s.waiting.empty()) s.cache->reset();
  model_path_ = model_path;
  s.paused = false;
  lock.unlock();
  s.cv.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

const ModelConfig& Engine::config() const { return impl_->loaded.config; }

}  // namespace sparrow
