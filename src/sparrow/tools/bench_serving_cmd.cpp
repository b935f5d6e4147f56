// `sparrow bench-serving`: an online serving benchmark modelled on SGLang's
// `python -m sglang.bench_serving`. Sends streaming requests to a running server (SGLang
// native /generate or OpenAI /v1/completions), measures TTFT, ITL, TPOT and E2E per request
// and prints SGLang's result table; --output-file writes the figures as JSON with the machine
// and commit. --offline runs the same requests in-process through generate_sync instead (the
// server-vs-engine throughput comparison of bench/run_serving_bench.sh).
#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sparrow/core/dtype.h"
#include "sparrow/core/error.h"
#include "sparrow/engine/sync_generate.h"
#include "sparrow/model/model.h"
#include "sparrow/tools/cli_util.h"
#include "sparrow/core/machine_info.h"
#include "sparrow/tools/commands.h"

namespace sparrow::tools {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchArgs {
  std::string device = "auto";  // --offline
  std::string host = "127.0.0.1";
  int port = 30000;
  std::string backend = "sglang";
  std::string dataset_name = "random";
  std::string dataset_path = std::string(SPARROW_SOURCE_DIR) + "/../shared/assets/corpus/austen/emma.txt";
  int num_prompts = 1000;
  int random_input_len = 1024;
  int random_output_len = 1024;
  double random_range_ratio = 0.0;
  double request_rate = std::numeric_limits<double>::infinity();
  int max_concurrency = 0;  // 0: not set
  int warmup_requests = 1;
  uint64_t seed = 1;
  std::string output_file;
  bool disable_ignore_eos = false;
  // JSON object merged into every request body (RFC 7386 merge patch), as SGLang's
  // --extra-request-body: e.g. '{"sampling_params": {"temperature": 0.7}}' (sglang backend).
  std::string extra_request_body;
  json extra;  // parsed
  int64_t vocab_size = 0;  // 0: ask the server
  // --offline: the same requests through the engine in-process.
  bool offline = false;
  std::string model_path;
  std::string load_format = "dummy";
  std::string dtype = "bfloat16";
};

struct BenchRequest {
  std::vector<int32_t> input_ids;  // random dataset
  std::string text;                // austen dataset
  int input_len = 0;               // known for random; server-reported for text
  int output_len = 0;
};

struct RequestOutput {
  bool success = false;
  std::string error;
  int prompt_len = 0;
  int output_len = 0;
  double ttft = 0, e2e = 0;  // seconds
  std::vector<double> itl;   // seconds
};

// ---- datasets --------------------------------------------------------------------------

int draw_len(std::mt19937_64& rng, int len, double ratio) {
  const int lo = std::max(1, int(double(len) * ratio));
  if (lo >= len) return std::max(len, 1);
  return std::uniform_int_distribution<int>(lo, len)(rng);
}

std::vector<BenchRequest> random_dataset(const BenchArgs& a, int64_t vocab, std::mt19937_64& rng) {
  std::vector<BenchRequest> out(size_t(a.num_prompts));
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab - 1));
  for (BenchRequest& r : out) {
    r.input_len = draw_len(rng, a.random_input_len, a.random_range_ratio);
    r.output_len = draw_len(rng, a.random_output_len, a.random_range_ratio);
    r.input_ids.resize(size_t(r.input_len));
    for (int32_t& t : r.input_ids) t = tok(rng);
  }
  return out;
}

// Prompts cut from a text at random word boundaries, about 4 characters per input token;
// the input length counted is what the server reports (prompt_tokens).
std::vector<BenchRequest> austen_dataset(const BenchArgs& a, std::mt19937_64& rng) {
  const std::string corpus = read_file_arg(a.dataset_path, "--dataset-path");
  SPARROW_REQUIRE(corpus.size() > 64, "--dataset-path {}: too short", a.dataset_path);
  std::vector<BenchRequest> out(size_t(a.num_prompts));
  for (BenchRequest& r : out) {
    const int in = draw_len(rng, a.random_input_len, a.random_range_ratio);
    r.output_len = draw_len(rng, a.random_output_len, a.random_range_ratio);
    const size_t chars = std::min(corpus.size() / 2, size_t(in) * 4);
    size_t pos = std::uniform_int_distribution<size_t>(0, corpus.size() - chars - 1)(rng);
    while (pos > 0 && corpus[pos - 1] != ' ' && corpus[pos - 1] != '\n') --pos;
    r.text = corpus.substr(pos, chars);
    r.input_len = in;  // replaced by the server's count when it reports one
  }
  return out;
}

// ---- client ----------------------------------------------------------------------------

json fetch_json(const BenchArgs& a, const char* path) {
  httplib::Client cli(a.host, a.port);
  cli.set_read_timeout(30, 0);
  auto res = cli.Get(path);
  if (!res || res->status != 200) return nullptr;
  return json::parse(res->body, nullptr, false);
}

bool wait_server(const BenchArgs& a) {
  for (int i = 0; i < 600; ++i) {
    httplib::Client cli(a.host, a.port);
    cli.set_connection_timeout(1, 0);
    if (auto res = cli.Get("/health"); res && res->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

int64_t server_vocab(const BenchArgs& a) {
  if (a.vocab_size > 0) return a.vocab_size;
  json info = fetch_json(a, "/model_info");
  if (info.is_object() && info.contains("vocab_size")) return info["vocab_size"].get<int64_t>();
  json models = fetch_json(a, "/v1/models");
  if (models.is_object() && models.contains("data") && !models["data"].empty()) {
    const json& m = models["data"][0];
    if (m.contains("vocab_size")) return m["vocab_size"].get<int64_t>();
  }
  throw InputError("could not read the vocabulary size from /model_info or /v1/models; give --vocab-size");
}

json request_body(const BenchArgs& a, const BenchRequest& r, int output_len) {
  const bool ignore_eos = !a.disable_ignore_eos;
  json body;
  if (a.backend == "sglang") {
    body = {{"stream", true},
            {"sampling_params", {{"max_new_tokens", output_len}, {"temperature", 0.0}, {"ignore_eos", ignore_eos}}}};
    if (r.text.empty()) body["input_ids"] = r.input_ids;
    else body["text"] = r.text;
  } else {
    body = {{"model", "default"}, {"max_tokens", output_len}, {"temperature", 0.0}, {"ignore_eos", ignore_eos},
            {"stream", true}, {"stream_options", {{"include_usage", true}}}};
    if (r.text.empty()) body["prompt"] = r.input_ids;
    else body["prompt"] = r.text;
  }
  if (!a.extra.is_null()) body.merge_patch(a.extra);
  return body;
}

// One streaming request; `cli` belongs to the calling worker thread.
RequestOutput send_request(httplib::Client& cli, const BenchArgs& a, const BenchRequest& r, int output_len) {
  RequestOutput out;
  out.prompt_len = r.input_len;
  httplib::Request req;
  req.method = "POST";
  req.path = a.backend == "sglang" ? "/generate" : "/v1/completions";
  req.body = request_body(a, r, output_len).dump();
  req.set_header("Content-Type", "application/json");
  const bool sglang = a.backend == "sglang";
  std::string buf;
  size_t prev_tokens = 0;
  int usage_tokens = -1;
  bool done = false;
  const auto t0 = Clock::now();
  auto last = t0;
  auto on_event = [&](const std::string& data) {
    if (data == "[DONE]") { done = true; return; }
    json j = json::parse(data, nullptr, false);
    if (j.is_discarded()) return;
    if (j.contains("error")) { out.error = j["error"].dump(); return; }
    size_t new_tokens = 0;
    if (sglang) {
      const size_t n = j.contains("output_ids") ? j["output_ids"].size() : prev_tokens;
      new_tokens = n > prev_tokens ? n - prev_tokens : 0;
      prev_tokens = std::max(prev_tokens, n);
      if (j.contains("meta_info")) {
        const json& m = j["meta_info"];
        if (m.contains("prompt_tokens")) out.prompt_len = m["prompt_tokens"].get<int>();
        if (m.contains("completion_tokens")) usage_tokens = m["completion_tokens"].get<int>();
      }
    } else {
      // OpenAI chunks carry text only: one engine step per chunk, so one token per chunk.
      if (j.contains("choices") && !j["choices"].empty()) {
        new_tokens = 1;
        prev_tokens += 1;
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        usage_tokens = j["usage"].value("completion_tokens", -1);
        out.prompt_len = j["usage"].value("prompt_tokens", out.prompt_len);
      }
    }
    if (new_tokens == 0) return;
    const auto now = Clock::now();
    if (out.ttft == 0) {
      out.ttft = std::chrono::duration<double>(now - t0).count();
    } else {
      const double gap = std::chrono::duration<double>(now - last).count() / double(new_tokens);
      out.itl.insert(out.itl.end(), new_tokens, gap);
    }
    last = now;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buf.append(data, len);
    size_t end;
    while ((end = buf.find("\n\n")) != std::string::npos) {
      std::string event = buf.substr(0, end);
      buf.erase(0, end + 2);
      std::istringstream lines(event);
      for (std::string line; std::getline(lines, line);)
        if (line.rfind("data:", 0) == 0) on_event(line.substr(line[5] == ' ' ? 6 : 5));
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool ok = cli.send(req, res, err);
  out.e2e = std::chrono::duration<double>(Clock::now() - t0).count();
  out.output_len = usage_tokens >= 0 ? usage_tokens : int(prev_tokens);
  if (!ok) out.error = "http error " + httplib::to_string(err);
  else if (res.status != 200) out.error = "status " + std::to_string(res.status) + ": " + buf.substr(0, 200);
  else if (!done && out.error.empty()) out.error = "stream ended without [DONE]";
  out.success = out.error.empty() && out.ttft > 0;
  if (!out.success && out.error.empty()) out.error = "no tokens received";
  return out;
}

// ---- statistics ------------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {  // numpy's linear interpolation
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(std::floor(idx)), hi = size_t(std::ceil(idx));
  return v[lo] + (v[hi] - v[lo]) * (idx - double(lo));
}
double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

void add_stats(json& j, const char* name, const std::vector<double>& secs) {
  std::vector<double> ms;
  for (double s : secs) ms.push_back(s * 1000.0);
  j[std::string("mean_") + name + "_ms"] = mean(ms);
  j[std::string("median_") + name + "_ms"] = percentile(ms, 50);
  j[std::string("p90_") + name + "_ms"] = percentile(ms, 90);
  j[std::string("p99_") + name + "_ms"] = percentile(ms, 99);
}

void print_table(const json& r) {
  auto row = [](const char* k, const std::string& v) { std::printf("%-40s %s\n", k, v.c_str()); };
  auto num = [](double x, int prec = 2) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, x);
    return std::string(b);
  };
  std::printf("\n============ Serving Benchmark Result ============\n");
  row("Backend:", r["backend"].get<std::string>());
  row("Traffic request rate:", r["request_rate"].is_number() ? num(r["request_rate"].get<double>()) : "inf");
  row("Max request concurrency:", r["max_concurrency"].is_number() ? std::to_string(r["max_concurrency"].get<int>()) : "not set");
  row("Successful requests:", std::to_string(r["completed"].get<int>()));
  row("Benchmark duration (s):", num(r["duration"].get<double>()));
  row("Total input tokens:", std::to_string(r["total_input_tokens"].get<int64_t>()));
  row("Total generated tokens:", std::to_string(r["total_output_tokens"].get<int64_t>()));
  row("Request throughput (req/s):", num(r["request_throughput"].get<double>()));
  row("Input token throughput (tok/s):", num(r["input_throughput"].get<double>()));
  row("Output token throughput (tok/s):", num(r["output_throughput"].get<double>()));
  row("Total token throughput (tok/s):", num(r["total_throughput"].get<double>()));
  const char* names[][2] = {{"e2e", "End-to-End Latency"}, {"ttft", "Time to First Token"},
                            {"tpot", "Time per Output Token (excl. 1st token)"}, {"itl", "Inter-Token Latency"}};
  const char* labels[] = {"E2E Latency", "TTFT", "TPOT", "ITL"};
  for (int i = 0; i < 4; ++i) {
    std::string title = std::string(names[i][1]);
    const int pad = std::max(0, 50 - int(title.size()));
    std::printf("%s%s%s\n", std::string(size_t(pad / 2), '-').c_str(), title.c_str(), std::string(size_t(pad - pad / 2), '-').c_str());
    for (const char* stat : {"mean", "median", "p90", "p99"}) {
      std::string label = std::string(stat == std::string("mean") ? "Mean" : stat == std::string("median") ? "Median"
                                       : stat == std::string("p90") ? "P90" : "P99") + " " + labels[i] + " (ms):";
      row(label.c_str(), num(r[std::string(stat) + "_" + names[i][0] + "_ms"].get<double>()));
    }
  }
  std::printf("==================================================\n");
}

void finish(const BenchArgs& a, json& r) {
  r["machine"] = machine_json();
  r["commit"] = git_commit();
  if (!a.output_file.empty()) {
    std::ofstream f(a.output_file);
    SPARROW_REQUIRE(f.good(), "--output-file {}: cannot write", a.output_file);
    f << r.dump(2) << "\n";
  }
}

// ---- online ----------------------------------------------------------------------------

void run_online(BenchArgs& a) {
  SPARROW_REQUIRE(a.backend == "sglang" || a.backend == "openai", "--backend must be sglang or openai");
  if (!a.extra_request_body.empty()) {
    a.extra = json::parse(a.extra_request_body, nullptr, /*allow_exceptions=*/false);
    SPARROW_REQUIRE(a.extra.is_object(), "--extra-request-body must be a JSON object, got: {}", a.extra_request_body);
  }
  SPARROW_REQUIRE(a.num_prompts >= 1, "--num-prompts must be >= 1");
  SPARROW_REQUIRE(wait_server(a), "no server answered /health at {}:{}", a.host, a.port);
  std::mt19937_64 rng(a.seed);
  std::vector<BenchRequest> reqs;
  if (a.dataset_name == "random") reqs = random_dataset(a, server_vocab(a), rng);
  else if (a.dataset_name == "austen") reqs = austen_dataset(a, rng);
  else throw InputError("--dataset-name must be random or austen");

  if (a.warmup_requests > 0) {
    std::printf("Starting warmup with %d sequences...\n", a.warmup_requests);
    std::vector<std::thread> ws;
    std::atomic<int> ok{0};
    for (int i = 0; i < a.warmup_requests; ++i)
      ws.emplace_back([&, i] {
        httplib::Client cli(a.host, a.port);
        cli.set_read_timeout(600, 0);
        const BenchRequest& r = reqs[size_t(i) % reqs.size()];
        if (send_request(cli, a, r, std::min(r.output_len, 16)).success) ++ok;
      });
    for (auto& t : ws) t.join();
    SPARROW_REQUIRE(ok.load() > 0, "warmup failed: no warmup request succeeded");
    std::printf("Warmup completed. Starting main benchmark run...\n");
  }

  // Arrival times: all at 0 for --request-rate inf, else a Poisson process.
  std::vector<double> arrival(reqs.size(), 0.0);
  if (std::isfinite(a.request_rate) && a.request_rate > 0) {
    std::exponential_distribution<double> gap(a.request_rate);
    double t = 0;
    for (double& x : arrival) { x = t; t += gap(rng); }
  }
  const int workers = a.max_concurrency > 0 ? std::min(a.max_concurrency, a.num_prompts) : std::min(a.num_prompts, 1024);
  std::vector<RequestOutput> outs(reqs.size());
  std::atomic<size_t> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w)
    threads.emplace_back([&] {
      httplib::Client cli(a.host, a.port);
      cli.set_read_timeout(3600, 0);
      cli.set_keep_alive(true);
      for (size_t i; (i = next.fetch_add(1)) < reqs.size();) {
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrival[i])));
        outs[i] = send_request(cli, a, reqs[i], reqs[i].output_len);
      }
    });
  for (auto& t : threads) t.join();
  const double duration = std::chrono::duration<double>(Clock::now() - start).count();

  int completed = 0;
  int64_t in_tok = 0, out_tok = 0;
  std::vector<double> ttft, tpot, itl, e2e;
  std::string first_error;
  for (const RequestOutput& o : outs) {
    if (!o.success) {
      if (first_error.empty()) first_error = o.error;
      continue;
    }
    ++completed;
    in_tok += o.prompt_len;
    out_tok += o.output_len;
    ttft.push_back(o.ttft);
    e2e.push_back(o.e2e);
    if (o.output_len > 1) tpot.push_back((o.e2e - o.ttft) / double(o.output_len - 1));
    itl.insert(itl.end(), o.itl.begin(), o.itl.end());
  }
  if (!first_error.empty())
    std::fprintf(stderr, "%d of %zu requests failed; first error: %s\n", int(reqs.size()) - completed, reqs.size(), first_error.c_str());
  json r;
  r["backend"] = a.backend;
  r["dataset_name"] = a.dataset_name;
  r["request_rate"] = std::isfinite(a.request_rate) ? json(a.request_rate) : json("inf");
  r["max_concurrency"] = a.max_concurrency > 0 ? json(a.max_concurrency) : json(nullptr);
  r["num_prompts"] = a.num_prompts;
  r["random_input_len"] = a.random_input_len;
  r["random_output_len"] = a.random_output_len;
  r["random_range_ratio"] = a.random_range_ratio;
  if (!a.extra.is_null()) r["extra_request_body"] = a.extra;
  r["completed"] = completed;
  r["duration"] = duration;
  r["total_input_tokens"] = in_tok;
  r["total_output_tokens"] = out_tok;
  r["request_throughput"] = completed / duration;
  r["input_throughput"] = double(in_tok) / duration;
  r["output_throughput"] = double(out_tok) / duration;
  r["total_throughput"] = double(in_tok + out_tok) / duration;
  add_stats(r, "ttft", ttft);
  add_stats(r, "tpot", tpot);
  add_stats(r, "itl", itl);
  add_stats(r, "e2e", e2e);
  print_table(r);
  finish(a, r);
  SPARROW_CHECK(completed > 0, "every request failed: {}", first_error);
}

// ---- offline ---------------------------------------------------------------------------

// The same requests (same seed, lengths and ids) through generate_sync with the server's
// default engine options: the upper bound the server is compared against.
void run_offline(const BenchArgs& a) {
  SPARROW_REQUIRE(!a.model_path.empty(), "--offline needs --model-path");
  SPARROW_REQUIRE(a.extra_request_body.empty(), "--extra-request-body applies to requests sent to a server, not --offline");
  SPARROW_REQUIRE(a.dataset_name == "random", "--offline supports --dataset-name random only");
  SPARROW_REQUIRE(a.num_prompts >= 1, "--num-prompts must be >= 1");
  LoadedModel m = load_model_source(a.model_path, a.load_format, parse_dtype(a.dtype), 0);
  const int64_t vocab = a.vocab_size > 0 ? a.vocab_size : m.config.vocab_size;
  std::mt19937_64 rng(a.seed);
  std::vector<BenchRequest> reqs = random_dataset(a, vocab, rng);
  EngineOptions opts;  // as `sparrow serve` with its defaults
  opts.max_running_requests = 256;
  opts.chunked_prefill_size = 8192;
  opts.log_interval_s = 0;
  apply_device_flags(a.device, 0, false, opts.gpu.cuda_graph_max_bs, opts.device, opts.gpu);
  Engine engine(std::move(m), nullptr, opts);
  auto make = [&](size_t n, int max_out) {
    std::vector<Request> out;
    for (size_t i = 0; i < n; ++i) {
      Request r;
      r.rid = std::to_string(i);
      r.input_ids = reqs[i % reqs.size()].input_ids;
      r.sampling.max_new_tokens = max_out > 0 ? std::min(max_out, reqs[i].output_len) : reqs[i].output_len;
      r.sampling.temperature = 0.f;
      r.sampling.ignore_eos = !a.disable_ignore_eos;
      out.push_back(std::move(r));
    }
    return out;
  };
  if (a.warmup_requests > 0) generate_sync(engine, make(size_t(std::min<int>(a.warmup_requests, a.num_prompts)), 16));
  const auto t0 = Clock::now();
  std::vector<SyncOutput> outs = generate_sync(engine, make(reqs.size(), 0));
  const double duration = std::chrono::duration<double>(Clock::now() - t0).count();
  int64_t in_tok = 0, out_tok = 0;
  std::vector<double> e2e;
  for (const SyncOutput& o : outs) {
    SPARROW_CHECK(!o.error, "generation failed: {}", o.error.value_or(""));
    in_tok += o.result.prompt_tokens;
    out_tok += int64_t(o.result.output_ids.size());
    e2e.push_back(o.result.e2e_latency_s);
  }
  json r;
  r["backend"] = "offline";
  r["dataset_name"] = a.dataset_name;
  r["num_prompts"] = a.num_prompts;
  r["random_input_len"] = a.random_input_len;
  r["random_output_len"] = a.random_output_len;
  r["random_range_ratio"] = a.random_range_ratio;
  r["completed"] = int(outs.size());
  r["duration"] = duration;
  r["total_input_tokens"] = in_tok;
  r["total_output_tokens"] = out_tok;
  r["request_throughput"] = double(outs.size()) / duration;
  r["input_throughput"] = double(in_tok) / duration;
  r["output_throughput"] = double(out_tok) / duration;
  r["total_throughput"] = double(in_tok + out_tok) / duration;
  add_stats(r, "e2e", e2e);
  std::printf("\n============ Offline Benchmark Result ============\n");
  std::printf("%-40s %d\n%-40s %.2f\n%-40s %lld\n%-40s %lld\n%-40s %.2f\n%-40s %.2f\n%-40s %.2f\n",
              "Successful requests:", int(outs.size()), "Benchmark duration (s):", duration,
              "Total input tokens:", (long long)in_tok, "Total generated tokens:", (long long)out_tok,
              "Request throughput (req/s):", double(outs.size()) / duration,
              "Output token throughput (tok/s):", double(out_tok) / duration,
              "Total token throughput (tok/s):", double(in_tok + out_tok) / duration);
  std::printf("==================================================\n");
  finish(a, r);
}

}  // namespace

void register_bench_serving_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench-serving", "Benchmark a running server like sglang.bench_serving (TTFT, ITL, TPOT, throughput)");
  cmd->add_option("--host", a->host, "Server address")->capture_default_str();
  cmd->add_option("--port", a->port, "Server port")->capture_default_str();
  cmd->add_option("--backend", a->backend, "sglang (POST /generate) | openai (POST /v1/completions)")->capture_default_str();
  cmd->add_option("--dataset-name", a->dataset_name, "random (token ids) | austen (text cut from --dataset-path)")->capture_default_str();
  cmd->add_option("--dataset-path", a->dataset_path, "Text file of the austen dataset")->capture_default_str();
  cmd->add_option("--num-prompts", a->num_prompts, "Requests to send")->capture_default_str();
  cmd->add_option("--random-input-len", a->random_input_len, "Input tokens per request (upper bound)")->capture_default_str();
  cmd->add_option("--random-output-len", a->random_output_len, "Output tokens per request (upper bound)")->capture_default_str();
  cmd->add_option("--random-range-ratio", a->random_range_ratio, "Lengths drawn uniformly in [len * ratio, len]")->capture_default_str();
  cmd->add_option_function<std::string>("--request-rate", [a](const std::string& v) {
    a->request_rate = (v == "inf") ? std::numeric_limits<double>::infinity() : std::stod(v);
  }, "Requests per second, Poisson arrivals (default inf: all at once)");
  cmd->add_option("--max-concurrency", a->max_concurrency, "Max requests in flight (default: not set)");
  cmd->add_option("--warmup-requests", a->warmup_requests, "Warmup requests before the run")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of the dataset and the arrivals")->capture_default_str();
  cmd->add_option("--output-file", a->output_file, "Write the results as JSON");
  cmd->add_flag("--disable-ignore-eos", a->disable_ignore_eos, "Let requests stop at end-of-sequence");
  cmd->add_option("--extra-request-body", a->extra_request_body,
                  "JSON object merged into each request body, e.g. '{\"sampling_params\": {\"temperature\": 0.7}}'");
  cmd->add_option("--vocab-size", a->vocab_size, "Vocabulary of random token ids (default: from /model_info)");
  cmd->add_flag("--offline", a->offline, "Run the same requests in-process through the engine (needs --model-path)");
  cmd->add_option("--model-path", a->model_path, "--offline: model directory or config.json");
  cmd->add_option("--load-format", a->load_format, "--offline: auto | safetensors | dummy")->capture_default_str();
  cmd->add_option("--dtype", a->dtype, "--offline: bfloat16 | float32")->capture_default_str();
  cmd->add_option("--device", a->device, "--offline: auto | cuda | cpu")->capture_default_str();
  cmd->callback([a] { a->offline ? run_offline(*a) : run_online(*a); });
}

}  // namespace sparrow::tools
