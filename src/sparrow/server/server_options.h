// Options of `sparrow serve`, one field per command-line flag (SGLang's names).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sparrow/core/dtype.h"
#include "sparrow/engine/engine.h"

namespace sparrow {

struct ServerOptions {
  std::string model_path;
  std::string tokenizer_path;  // "": the model directory
  bool skip_tokenizer_init = false;
  std::string load_format = "auto";
  std::string dtype = "bfloat16";
  std::string host = "127.0.0.1";
  int port = 30000;  // 0: any free port (Server::port() tells which)
  std::string api_key;
  std::string served_model_name;  // "": the model path
  int64_t max_total_tokens = 0;   // 0: from mem_fraction_static, else the engine default
  double mem_fraction_static = 0;  // > 0: CPU: KV pool = this fraction of available memory;
                                   // GPU: weights + KV + workspace (default 0.88)
  std::string device = "auto";     // auto | cuda | cpu
  bool disable_cuda_graph = false;
  int64_t cuda_graph_max_bs = 160;
  int32_t max_running_requests = 256;
  int64_t chunked_prefill_size = 8192;
  int64_t context_length = 0;
  bool disable_radix_cache = false;
  std::string schedule_policy = "fcfs";
  size_t max_request_bytes = size_t(8) << 20;
  bool enable_metrics = false;
  double log_interval = 10.0;
  std::optional<uint64_t> random_seed;
  int http_threads = 0;              // 0: max(32, max_running_requests + 16), at most 1024
  double shutdown_grace_s = 5.0;     // on SIGINT/SIGTERM, wait this long for requests in flight
  std::string kv_cache_dtype = "auto";  // auto (the model dtype) | bfloat16 | float32
  // Parallel layout and deterministic mode (--tp-size, --dp-size, ... : tools/parallel_flags.h).
  ParallelOptions parallel;
  DpRouter dp_router = DpRouter::kRoundRobin;
};

}  // namespace sparrow
