// What every route handler shares: options, engine, tokenizer (null with
// --skip-tokenizer-init), metrics (null without --enable-metrics) and the shutdown flag.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "sparrow/engine/engine.h"
#include "sparrow/server/metrics.h"
#include "sparrow/server/server_options.h"
#include "sparrow/tokenizer/tokenizer.h"

namespace sparrow::server {



struct ServerContext {
  ServerOptions opts;
  std::string model_name;      // served model name (OpenAI "model")
  std::string tokenizer_path;  // "" without a tokenizer
  // Declared in dependency order: the engine (destroyed first) calls sinks that use metrics
  // and detokenizes with the tokenizer.
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<Engine> engine;
  std::atomic<bool> shutting_down{false};
  std::atomic<int64_t> in_flight{0};  // HTTP generation requests being served
  double start_time_s = 0;

  const Tokenizer& require_tokenizer(const char* what) const;
  int64_t vocab_size() const { return engine->config().vocab_size; }
};

}  // namespace sparrow::server
