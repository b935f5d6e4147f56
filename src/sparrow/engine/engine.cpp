// The serving loop. One thread owns the schedulers (one per DP group) and drives the
// ModelExecutor; other threads only touch the inbox under `mu`.
//
// Each step: take new submissions (routed to a DP group: round robin or least load),
// aborts and flushes from the inbox; every scheduler plans its batch (extend, decode or
// idle); all ranks run the step together; every scheduler consumes its logits.
#include "sparrow/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>

#include "sparrow/core/log.h"
#include "sparrow/engine/model_executor.h"
#include "sparrow/engine/scheduled_request.h"
#include "sparrow/engine/scheduler.h"
#include "sparrow/tokenizer/tokenizer.h"

namespace sparrow {

using Clock = std::chrono::steady_clock;

struct Engine::Impl {
  Impl(LoadedModel m, const Tokenizer* tok, EngineOptions o) : loaded(std::move(m)), tokenizer(tok), opts(o) {}

  // ---- state owned by the loop thread ----
  LoadedModel loaded;
  const Tokenizer* tokenizer;
  EngineOptions opts;
  int64_t context_length = 0;
  int64_t kv_slots = 0;
  std::unique_ptr<ModelExecutor> executor;
  std::vector<std::unique_ptr<Scheduler>> schedulers;
  std::vector<StepPlan> plans;
  std::vector<Buffer> logits;
  size_t next_dp = 0;
  double scheduler_seconds = 0, forward_seconds = 0;
  Clock::time_point last_log = Clock::now();

  // ---- shared with other threads, under mu ----
  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<ScheduledRequest>> inbox;
  std::vector<std::string> abort_inbox;
  bool stopping = false;
  bool flush_requested = false;
  bool paused = false;  // update_weights in progress: the loop parks
  bool loop_idle = false;
  std::condition_variable idle_cv;
  EngineStats stats;
  std::thread thread;

  DType kv_dtype() const { return opts.kv_cache_dtype.value_or(loaded.dtype); }

  // Most tokens one DP group puts in a step (sizes the workspaces): a prefill chunk or a
  // decode batch, and never more than the KV pool holds (once its size is known).
  int64_t max_step_tokens() const {
    const int64_t chunk = opts.chunked_prefill_size > 0 ? opts.chunked_prefill_size : context_length;
    const int64_t most = std::max<int64_t>(chunk, opts.max_running_requests);
    return kv_slots > 0 ? std::min<int64_t>(most, kv_slots) : most;
  }

  std::unique_ptr<ModelExecutor> make_executor() const {
    DeviceOptions gpu = opts.gpu;
    gpu.max_batch = opts.max_running_requests;
    gpu.max_context = context_length;
    return std::make_unique<ModelExecutor>(loaded.config, *loaded.source, loaded.dtype, kv_dtype(), opts.parallel, kv_slots,
                                           max_step_tokens(), opts.device, gpu);
  }

  std::vector<int64_t> stop_ids() const {
    std::vector<int64_t> ids = loaded.config.eos_token_ids;
    if (tokenizer)
      for (int32_t id : tokenizer->stop_token_ids())
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    return ids;
  }

  void init() {
    loaded.model.reset();  // the executor builds its own shards
    if (const char* env = std::getenv("SPARROW_DEVICE_LOGPROBS"); env && std::string(env) == "0" && opts.device_logprobs) {
      opts.device_logprobs = false;
      log(LogLevel::kInfo, "engine: output logprobs from the host logits (SPARROW_DEVICE_LOGPROBS=0)");
    }
    if (const char* env = std::getenv("SPARROW_DEVICE_PENALTIES"); env && std::string(env) == "0" && opts.device_penalties) {
      opts.device_penalties = false;
      log(LogLevel::kInfo, "engine: penalties and min_new_tokens masks on the host logits (SPARROW_DEVICE_PENALTIES=0)");
    }
    const ModelConfig& c = loaded.config;
    context_length = opts.context_length > 0 ? opts.context_length : std::max<int64_t>(c.max_position_embeddings, 1);
    // KV slots per DP group: --max-total-tokens, or what the memory budget holds (on a GPU:
    // what the device memory plan leaves, decided by the executor).
    kv_slots = opts.max_total_tokens;
    if (kv_slots <= 0 && opts.device == Device::kCPU) {
      const Mesh mesh = Mesh::build(opts.parallel.layout, c);
      const int64_t kv_heads_per_rank = std::max<int64_t>(1, c.num_kv_heads / mesh.attn_tp);
      const size_t per_token = size_t(2 * c.num_layers * kv_heads_per_rank * c.head_dim * mesh.attn_tp) * dtype_size(kv_dtype());
      kv_slots = std::max<int64_t>(opts.kv_memory_bytes / int64_t(per_token) / mesh.attn_dp, context_length);
    }
    executor = make_executor();
    kv_slots = executor->kv_slots();
    for (int d = 0; d < executor->dp_size(); ++d)
      schedulers.push_back(std::make_unique<Scheduler>(c, tokenizer, opts, kv_slots, context_length, stop_ids()));
    plans.resize(schedulers.size());
    const std::vector<std::string> unused = loaded.source->unused_names();
    if (!unused.empty())
      log(LogLevel::kWarn, "{} checkpoint tensors were not used by the model (first: {})", unused.size(), unused.front());
    logits.resize(schedulers.size());
    log(LogLevel::kInfo, "engine: KV pool {} tokens per DP group ({:.1f} MiB), context {}, max running {}, chunked prefill {}",
        kv_slots, double(kv_slots) * double(executor->kv_bytes_per_token()) / 1048576.0, context_length,
        opts.max_running_requests, opts.chunked_prefill_size);
  }

  // Picks a DP group for a new request.
  Scheduler& route() {
    if (opts.dp_router == DpRouter::kLeastLoad) {
      return **std::min_element(schedulers.begin(), schedulers.end(),
                                [](const auto& a, const auto& b) { return a->load() < b->load(); });
    }
    Scheduler& s = *schedulers[next_dp];
    next_dp = (next_dp + 1) % schedulers.size();
    return s;
  }

  void handle_inbox() {
    std::vector<std::unique_ptr<ScheduledRequest>> fresh;
    std::vector<std::string> aborts;
    bool flush = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      fresh.swap(inbox);
      aborts.swap(abort_inbox);
      flush = flush_requested;
      flush_requested = false;
    }
    // A flush was accepted while nothing was queued, so every request in `fresh` came after
    // it: flush first, or a new request could match (and pin) the prefix being flushed.
    if (flush)
      for (auto& s : schedulers) s->flush_cache();
    for (auto& q : fresh) route().add(std::move(q));
    for (const std::string& rid : aborts)
      for (auto& s : schedulers) s->abort(rid, "aborted");
  }

  // Plans, runs and consumes one step. False when every group was idle (nothing ran).
  bool step() {
    const auto t_plan = Clock::now();
    bool any = false;
    std::vector<const ForwardBatch*> batches;
    std::vector<const ReqToTokenPool*> tables;
    std::vector<Tensor> outs;
    for (size_t d = 0; d < schedulers.size(); ++d) {
      schedulers[d]->plan(plans[d]);
      any |= !plans[d].empty();
      const int64_t rows = int64_t(plans[d].batch.logit_rows.size());
      batches.push_back(&plans[d].batch);
      tables.push_back(&schedulers[d]->table());
      if (executor->device() == Device::kCUDA && !plans[d].batch.sampling.empty() && plans[d].batch.host_rows.empty()) {
        outs.emplace_back();  // chosen (and logprobs rows) on the device: no logits come back
        continue;
      }
      if (logits[d].tensor().rank() == 0 || logits[d].tensor().size(0) < rows)
        logits[d] = executor->logits_buffer(std::max<int64_t>(rows, opts.max_running_requests), loaded.config.vocab_size);
      outs.push_back(logits[d].tensor().slice_rows(0, rows));
    }
    if (!any) return false;
    std::vector<int32_t*> chosen;
    std::vector<RowLogprobsOut*> row_lps;
    for (auto& p : plans) {
      chosen.push_back(p.chosen.data());
      row_lps.push_back(p.logprobs.data());
    }
    const auto t0 = Clock::now();
    executor->step(batches, tables, outs, chosen, row_lps);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    int64_t tokens = 0;
    for (size_t d = 0; d < schedulers.size(); ++d) {
      tokens += plans[d].batch.num_tokens();
      schedulers[d]->finish_step(plans[d], outs[d]);
    }
    const double total = std::chrono::duration<double>(Clock::now() - t_plan).count();
    scheduler_seconds += total - secs;
    forward_seconds += secs;
    {
      std::lock_guard<std::mutex> lock(mu);
      stats.last_step_tokens_per_s = double(tokens) / std::max(secs, 1e-9);
    }
    maybe_log(tokens, secs);
    return true;
  }

  void update_gauges() {
    EngineStats s;
    for (auto& sch : schedulers) sch->add_stats(s);
    s.comm_bytes = executor->comm_bytes();
    s.scheduler_seconds = scheduler_seconds;
    s.forward_seconds = forward_seconds;
    std::lock_guard<std::mutex> lock(mu);
    s.last_step_tokens_per_s = stats.last_step_tokens_per_s;
    stats = s;
  }

  void maybe_log(int64_t tokens, double secs) {
    if (opts.log_interval_s <= 0) return;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_log).count() < opts.log_interval_s) return;
    last_log = now;
    EngineStats s;
    for (auto& sch : schedulers) sch->add_stats(s);
    log(LogLevel::kInfo, "step: {} tokens | running {} waiting {} | KV used {:.1f}% cached {} | {:.0f} tok/s", tokens,
        s.running, s.waiting, 100.0 * double(s.kv_used) / double(std::max<int64_t>(s.kv_total, 1)), s.kv_cached,
        double(tokens) / std::max(secs, 1e-9));
  }

  bool has_work() const {
    for (auto& s : schedulers)
      if (!s->idle()) return true;
    return false;
  }

  void loop() {
    for (;;) {
      bool is_paused;
      {
        std::unique_lock<std::mutex> lock(mu);
        loop_idle = true;
        idle_cv.notify_all();
        // Aborts are handled even while paused (update_weights waits for them to be done).
        cv.wait(lock, [&] {
          return stopping || !abort_inbox.empty() || (!paused && (!inbox.empty() || flush_requested || has_work()));
        });
        loop_idle = false;
        if (stopping) break;
        is_paused = paused;
      }
      try {
        if (is_paused) {
          std::vector<std::string> aborts;
          {
            std::lock_guard<std::mutex> lock(mu);
            aborts.swap(abort_inbox);
          }
          for (const std::string& rid : aborts)
            for (auto& s : schedulers) s->abort(rid, "aborted");
        } else {
          handle_inbox();
          step();
        }
      } catch (const std::exception& e) {
        // A failure inside a step fails the requests in it, never the server.
        log(LogLevel::kError, "engine step failed: {}", e.what());
        for (auto& s : schedulers) s->abort("", std::string("internal error: ") + e.what());
      }
      update_gauges();
    }
    for (auto& s : schedulers) s->abort("", "server shutting down");
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
  SPARROW_REQUIRE(prompt < context_length_, "the prompt has {} tokens, more than the context length {} allows", prompt,
                  context_length_);
  SPARROW_REQUIRE(prompt + req.sampling.max_new_tokens <= context_length_,
                  "prompt ({} tokens) + max_new_tokens ({}) exceeds the context length {}", prompt,
                  req.sampling.max_new_tokens, context_length_);
  SPARROW_REQUIRE(prompt + req.sampling.max_new_tokens <= impl_->kv_slots,
                  "prompt + max_new_tokens ({}) exceeds the KV pool ({} tokens)", prompt + req.sampling.max_new_tokens,
                  impl_->kv_slots);
  SPARROW_REQUIRE(req.logprob_start_len >= -1 && req.logprob_start_len < prompt, "logprob_start_len {} must be in [-1, {})",
                  req.logprob_start_len, prompt);
  SPARROW_REQUIRE(req.top_logprobs_num >= 0 && req.top_logprobs_num <= 1000, "top_logprobs_num must be in [0, 1000]");
  for (int32_t id : req.token_ids_logprob)
    SPARROW_REQUIRE(id >= 0 && id < c.vocab_size, "token_ids_logprob: {} is outside the vocabulary", id);
  if (!req.sampling.stop.empty())
    SPARROW_REQUIRE(impl_->tokenizer, "stop strings need a tokenizer (the server runs with --skip-tokenizer-init)");

  auto q = std::make_unique<ScheduledRequest>();
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
  LoadedModel fresh = load_model_source(model_path, load_format.empty() ? "auto" : load_format, s.loaded.dtype, s.loaded.seed);
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
  // The loop is parked: swap the weights and rebuild the ranks (KV memory included).
  s.executor.reset();
  s.loaded = std::move(fresh);
  s.executor = s.make_executor();
  for (auto& sch : s.schedulers) sch->flush_cache();
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
