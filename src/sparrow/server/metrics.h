// Prometheus metrics of the server (GET /metrics with --enable-metrics): request and token
// counters, TTFT / inter-token / end-to-end latency histograms, and engine gauges (queue,
// running, KV usage, prefix-cache hit rate). Observations come from engine sinks, so every
// method is cheap and thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "sparrow/engine/engine.h"

namespace sparrow::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket / _sum / _count lines of `name`.
  void render(const std::string& name, const std::string& labels, std::string& out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last: +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);

  void on_request(bool ok);  // a request finished (ok) or failed / was aborted
  void on_first_token(double ttft_s);
  void on_tokens(double gap_s, int64_t n);  // n more tokens, gap_s after the previous ones
  void on_finished(double e2e_s, int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens);
  void on_http_error(int status);

  std::string render(const EngineStats& s) const;

 private:
  mutable std::mutex mu_;
  std::string labels_;
  uint64_t requests_ok_ = 0, requests_failed_ = 0, http_errors_ = 0;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0, cached_tokens_ = 0;
  Histogram ttft_, itl_, e2e_;
};

}  // namespace sparrow::server
