// `sparrow serve`: the HTTP server (SGLang native + OpenAI-compatible routes). Runs until
// SIGINT / SIGTERM, then shuts down gracefully.
#include <CLI/CLI.hpp>

#include <memory>

#include "sparrow/core/log.h"
#include "sparrow/server/server.h"
#include "sparrow/tools/commands.h"
#include "sparrow/tools/parallel_flags.h"

#ifndef SPARROW_DEFAULT_MODEL_DIR
#define SPARROW_DEFAULT_MODEL_DIR ""
#endif

namespace sparrow::tools {

void register_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServerOptions>();
  o->model_path = SPARROW_DEFAULT_MODEL_DIR;
  auto seed = std::make_shared<int64_t>(-1);
  auto verbose = std::make_shared<bool>(false);
  auto parallel = std::make_shared<ParallelFlags>();
  auto* cmd = app.add_subcommand("serve", "Serve a model over HTTP (SGLang native API and OpenAI-compatible API)");
  cmd->add_option("--model-path", o->model_path, "Model directory (default: the embedded model)")->capture_default_str();
  cmd->add_option("--tokenizer-path", o->tokenizer_path, "Tokenizer directory (default: the model directory)");
  cmd->add_flag("--skip-tokenizer-init", o->skip_tokenizer_init, "No tokenizer: token ids in and out only");
  cmd->add_option("--load-format", o->load_format, "auto | safetensors | dummy")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "bfloat16 | float32")->capture_default_str();
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port)")->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "Require Authorization: Bearer <key> on every route but /health and /metrics");
  cmd->add_option("--served-model-name", o->served_model_name, "Model name in OpenAI responses (default: the model path)");
  cmd->add_option("--max-total-tokens", o->max_total_tokens, "KV pool size in tokens (0: from --mem-fraction-static or 1 GiB)");
  cmd->add_option("--mem-fraction-static", o->mem_fraction_static,
                  "GPU: share of device memory for weights + KV + workspace (default 0.88); CPU: KV pool = this share of available memory");
  cmd->add_option("--device", o->device, "auto (cuda when a GPU is present) | cuda | cpu")->capture_default_str();
  cmd->add_option("--cuda-graph-max-bs", o->cuda_graph_max_bs, "Largest decode batch replayed from a CUDA graph")->capture_default_str();
  cmd->add_flag("--disable-cuda-graph", o->disable_cuda_graph, "Run decode without CUDA graphs");
  cmd->add_option("--max-running-requests", o->max_running_requests, "Max requests decoding at once")->capture_default_str();
  cmd->add_option("--chunked-prefill-size", o->chunked_prefill_size, "Max tokens per prefill step (<= 0: unlimited)")->capture_default_str();
  cmd->add_option("--context-length", o->context_length, "Context length (0: the model's)");
  cmd->add_flag("--disable-radix-cache", o->disable_radix_cache, "Turn the prefix cache off");
  cmd->add_option("--schedule-policy", o->schedule_policy, "fcfs | lpm")->capture_default_str();
  cmd->add_option("--max-request-bytes", o->max_request_bytes, "Larger request bodies get 413")->capture_default_str();
  cmd->add_flag("--enable-metrics", o->enable_metrics, "Serve Prometheus metrics on /metrics");
  cmd->add_option("--log-interval", o->log_interval, "Seconds between engine step logs (0: none)")->capture_default_str();
  cmd->add_option("--random-seed", *seed, "Seed of --load-format dummy weights");
  cmd->add_option("--http-threads", o->http_threads, "HTTP worker threads (0: max-running-requests + 16, >= 32)");
  cmd->add_option("--shutdown-grace", o->shutdown_grace_s, "Seconds requests in flight may finish after SIGINT/SIGTERM")->capture_default_str();
  cmd->add_flag("--verbose", *verbose, "Debug logging (e.g. ignored request fields)");
  cmd->add_option("--kv-cache-dtype", o->kv_cache_dtype, "auto (the model dtype) | bfloat16 | float32")->capture_default_str();
  add_parallel_flags(*cmd, *parallel);
  cmd->callback([o, seed, verbose, parallel] {
    EngineOptions layout;
    parallel->apply(layout);
    o->parallel = layout.parallel;
    o->dp_router = layout.dp_router;
    if (*seed >= 0) o->random_seed = uint64_t(*seed);
    if (*verbose) set_log_level(LogLevel::kDebug);
    // Every thread started from here on inherits the blocked mask; one thread waits for them.
    server::block_shutdown_signals();
    server::Server s(*o);
    s.start();
    const int sig = server::wait_for_shutdown_signal();
    log(LogLevel::kInfo, "received signal {}, shutting down", sig);
    s.stop();
  });
}

}  // namespace sparrow::tools
