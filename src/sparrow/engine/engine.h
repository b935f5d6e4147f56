// Engine: the serving core of one data-parallel rank. A background thread runs the
// scheduler loop (continuous batching, chunked prefill, radix prefix cache, KV admission
// and retraction); callers on any thread submit requests and receive OutputChunks through
// their sink (called on the engine thread: a sink must not block).
//
// Data flow: submit(Request) -> waiting queue -> Scheduler picks an extend or decode batch
// -> ForwardBatch -> CausalLM::forward -> logits -> Sampler / logprobs -> OutputChunk.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "sparrow/engine/device_options.h"
#include "sparrow/engine/request.h"
#include "sparrow/kernels/row_sampling.h"
#include "sparrow/model/model.h"
#include "sparrow/parallel/rank_context.h"

namespace sparrow {

class Tokenizer;

enum class SchedulePolicy : uint8_t { kFcfs, kLpm };  // first come first served | longest prefix match
enum class DpRouter : uint8_t { kRoundRobin, kLeastLoad };  // how new requests pick a DP group

struct EngineOptions {
  int64_t max_total_tokens = 0;       // KV pool slots; 0: from kv_memory_bytes
  int64_t kv_memory_bytes = int64_t(1) << 30;
  int32_t max_running_requests = 256;
  int64_t chunked_prefill_size = 8192;  // max tokens of one extend step (<= 0: unlimited)
  int64_t context_length = 0;           // 0: the model's max_position_embeddings
  bool disable_radix_cache = false;
  SchedulePolicy schedule_policy = SchedulePolicy::kFcfs;
  double log_interval_s = 10.0;         // one step log line at most this often (0: never)
  ParallelOptions parallel;             // TP / DP-attention / EP layout, deterministic mode
  std::optional<DType> kv_cache_dtype;  // --kv-cache-dtype; unset ("auto"): the model dtype
  DpRouter dp_router = DpRouter::kRoundRobin;
  Device device = Device::kCPU;         // --device (tools resolve "auto")
  DeviceOptions gpu;                    // GPU memory plan and CUDA graphs (device kCUDA)
  // Output logprobs of sampled rows (return_logprob, top_logprobs_num <= 64, up to 64
  // token_ids_logprob) from the executor's ops::row_logprobs: on a GPU computed on the
  // device next to the sampled token, so the step returns ids and a few floats instead of
  // [rows, V] logits. Off (or SPARROW_DEVICE_LOGPROBS=0): from the host logits, as before.
  // Never in deterministic mode (its logprobs are the host's bits).
  bool device_logprobs = true;
  // Sampled rows with penalties (repetition, frequency, presence) or min_new_tokens masks
  // choose on the executor too: their LogitEdits travel with the step (at most
  // kMaxStepLogitEdits) and a GPU applies them before sample_rows. Off (or
  // SPARROW_DEVICE_PENALTIES=0): such a row sends its step's logits to the host, as before.
  bool device_penalties = true;
  // A step whose rows need more LogitEdits than this samples on the host instead (the
  // executor's buffer holds kMaxStepLogitEdits; larger values are clamped to it).
  int64_t max_step_logit_edits = kMaxStepLogitEdits;
};

// Counters and gauges for /get_load, /server_info and /metrics.
struct EngineStats {
  int64_t running = 0, waiting = 0;
  int64_t kv_total = 0, kv_used = 0, kv_cached = 0;  // slots (all DP groups): pool, held by requests, in the prefix cache
  int64_t prompt_tokens = 0, generation_tokens = 0, cached_tokens = 0;
  int64_t requests_finished = 0, requests_aborted = 0, retractions = 0;
  // Steps whose rows the executor sampled (ForwardBatch::sampling, after the rows'
  // penalties and masks) and returned token ids instead of logits.
  int64_t executor_sampled_steps = 0;
  // Those of them whose rows' output logprobs came from the executor too (ops::row_logprobs).
  int64_t executor_logprob_steps = 0;
  double last_step_tokens_per_s = 0;
  uint64_t comm_bytes = 0;  // moved by the ranks' collectives since start
  // Time spent since start in steps that ran the model: planning and consuming logits
  // (the scheduler's own time) vs the model forward on all ranks.
  double scheduler_seconds = 0, forward_seconds = 0;
};

class Engine {
 public:
  // `model` needs its config and weight source (load_model_source); the engine builds one
  // model shard per rank itself. `tokenizer` may be null (--skip-tokenizer-init): no text, no
  // stop strings.
  Engine(LoadedModel model, const Tokenizer* tokenizer, EngineOptions opts);
  ~Engine();  // stops the loop; unfinished requests get an error chunk

  // Validates and queues. Throws InputError for a bad request (nothing queued).
  void submit(Request req, OutputSink sink);
  // Aborts a queued or running request (its sink gets a final chunk with an error).
  // Returns false when no such request is known. rid "" aborts everything.
  bool abort(const std::string& rid);
  // Empties the prefix cache; false (nothing done) while requests are running or waiting.
  bool flush_cache();
  // Reloads weights from `model_path` in place (same architecture and shapes): pauses the
  // loop, aborts requests in flight, swaps, flushes the cache, resumes. InputError on failure
  // (the old weights stay).
  void update_weights_from_disk(const std::string& model_path, const std::string& load_format);

  EngineStats stats() const;
  const ModelConfig& config() const;
  const std::string& model_path() const { return model_path_; }
  int64_t context_length() const { return context_length_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string model_path_;
  int64_t context_length_ = 0;
};

}  // namespace sparrow
