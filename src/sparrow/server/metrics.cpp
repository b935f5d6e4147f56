#include "sparrow/server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace sparrow::server {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& labels, std::string& out) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, bounds_[i], cum);
  }
  cum += counts_.back();
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, cum);
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, sum_);
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_);
}

namespace {
const std::vector<double> kLatencyBounds = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                            0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
const std::vector<double> kItlBounds = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04,
                                        0.05,   0.075, 0.1,   0.15,  0.2,  0.3,   0.4,  0.5,   1.0,  2.5};
}  // namespace

Metrics::Metrics(std::string model_name)
    : labels_(fmt::format("model_name=\"{}\"", model_name)), ttft_(kLatencyBounds), itl_(kItlBounds), e2e_(kLatencyBounds) {
  // Label values must escape backslash, quote and newline.
  std::string esc;
  for (char c : model_name) {
    if (c == '\\' || c == '"') esc += '\\', esc += c;
    else if (c == '\n') esc += "\\n";
    else esc += c;
  }
  labels_ = fmt::format("model_name=\"{}\"", esc);
}

void Metrics::on_request(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  (ok ? requests_ok_ : requests_failed_)++;
}

void Metrics::on_first_token(double ttft_s) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(ttft_s);
}

void Metrics::on_tokens(double gap_s, int64_t n) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t i = 0; i < n; ++i) itl_.observe(gap_s / double(n));
}

void Metrics::on_finished(double e2e_s, int64_t prompt_tokens, int64_t completion_tokens, int64_t cached_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  e2e_.observe(e2e_s);
  prompt_tokens_ += uint64_t(prompt_tokens);
  generation_tokens_ += uint64_t(completion_tokens);
  cached_tokens_ += uint64_t(cached_tokens);
}

void Metrics::on_http_error(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++http_errors_;
}

std::string Metrics::render(const EngineStats& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string o;
  const std::string& l = labels_;
  auto counter = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} counter\n{}{{{}}} {}\n", name, help, name, name, l, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{}{{{}}} {}\n", name, help, name, name, l, v);
  };
  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    o += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    h.render(name, l, o);
  };
  counter("sparrow:num_requests_total", "Requests finished successfully.", double(requests_ok_));
  counter("sparrow:num_aborted_requests_total", "Requests aborted or failed after submission.", double(requests_failed_));
  counter("sparrow:num_http_errors_total", "Requests rejected with an HTTP error status.", double(http_errors_));
  counter("sparrow:prompt_tokens_total", "Prompt tokens of finished requests.", double(prompt_tokens_));
  counter("sparrow:generation_tokens_total", "Generated tokens of finished requests.", double(generation_tokens_));
  counter("sparrow:cached_tokens_total", "Prompt tokens served from the prefix cache.", double(cached_tokens_));
  histogram("sparrow:time_to_first_token_seconds", "Time to first token.", ttft_);
  histogram("sparrow:inter_token_latency_seconds", "Time per output token after the first (TPOT).", itl_);
  histogram("sparrow:e2e_request_latency_seconds", "End-to-end request latency.", e2e_);
  gauge("sparrow:num_running_reqs", "Requests running in the engine.", double(s.running));
  gauge("sparrow:num_queue_reqs", "Requests waiting in the engine's queue.", double(s.waiting));
  gauge("sparrow:token_usage", "Fraction of KV slots held by requests.",
        s.kv_total > 0 ? double(s.kv_used) / double(s.kv_total) : 0.0);
  gauge("sparrow:kv_cached_tokens", "KV slots holding prefix-cache entries.", double(s.kv_cached));
  gauge("sparrow:cache_hit_rate", "Prompt tokens served from the prefix cache / prompt tokens.",
        prompt_tokens_ > 0 ? double(cached_tokens_) / double(prompt_tokens_) : 0.0);
  gauge("sparrow:gen_throughput", "Tokens per second of the last engine step.", s.last_step_tokens_per_s);
  counter("sparrow:retractions_total", "Requests retracted for lack of KV memory.", double(s.retractions));
  return o;
}

}  // namespace sparrow::server
