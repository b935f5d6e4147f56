// Parallel layouts on CPU ranks: generation throughput in default and deterministic mode
// (the cost of the fixed reduction trees), and the bytes the collectives move per token
// per layer in each layout.
//
//   build/bench/parallel_bench --config ../shared/assets/configs/qwen3-30b-a3b.json
//       [--layers 2] [--batch 8] [--prompt 64] [--steps 16] [--dtype bfloat16] [--only LAYOUT]
//       [--repeats 5] [--mode both|default|deterministic]
//
// The model is the config's shape with dummy weights, cut to --layers layers so that it
// fits and runs quickly on a small machine (per-layer figures do not depend on depth).
// Both modes' engines are built first and their runs alternate (default, deterministic,
// default, ...), so a change in the machine's load hits both alike; figures are medians
// over --repeats runs and the load average is recorded beside them. `--mode` runs one mode
// only (for a profiler). Prints one JSON object.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "sparrow/engine/sync_generate.h"

using namespace sparrow;
using Clock = std::chrono::steady_clock;

namespace {

struct LayoutSpec {
  const char* name;
  ParallelConfig layout;
  MoeA2ABackend a2a;
};

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string s;
  std::getline(f, s);
  return s;
}

struct Run {
  double seconds = 0, comm_bytes = 0, sched = 0, fwd = 0, cached = 0;
};

// The engine refreshes its gauges (running requests, collective bytes) after each step, a
// little after the step's final chunks are delivered: wait until they show an idle engine,
// so that bytes are read after the last step and a cache flush is not refused.
EngineStats settled(const Engine& e) {
  for (;;) {
    const EngineStats s = e.stats();
    if (s.running == 0 && s.waiting == 0) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, dtype = "bfloat16", only, mode = "both";
  int64_t layers = 2, batch = 8, prompt = 64, steps = 16, repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") config_path = v;
    else if (k == "--layers") layers = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--prompt") prompt = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--dtype") dtype = v;
    else if (k == "--only") only = v;
    else if (k == "--repeats") repeats = std::max<int64_t>(1, std::stoll(v));
    else if (k == "--mode") mode = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  if (config_path.empty()) { std::fprintf(stderr, "--config PATH is required\n"); return 2; }
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(config_path));
  cfg["num_hidden_layers"] = layers;
  const std::string cut = (std::filesystem::temp_directory_path() / "sparrow_parallel_bench_config.json").string();
  std::ofstream(cut) << cfg.dump();

  const std::vector<LayoutSpec> layouts = {
      {"tp1", {1, 1, 1, false, 0}, MoeA2ABackend::kNone},
      {"tp2", {2, 1, 1, false, 0}, MoeA2ABackend::kNone},
      {"tp2_ep2", {2, 1, 2, false, 0}, MoeA2ABackend::kNone},
      {"tp2_ep2_a2a", {2, 1, 2, false, 0}, MoeA2ABackend::kAllToAll},
      {"tp2_dp2_ep2", {2, 2, 2, true, 0}, MoeA2ABackend::kNone},
      {"tp2_dp2_ep2_a2a", {2, 2, 2, true, 0}, MoeA2ABackend::kAllToAll},
      {"tp4_ep4", {4, 1, 4, false, 0}, MoeA2ABackend::kNone},
      {"tp4_dp2_ep4_a2a", {4, 2, 4, true, 0}, MoeA2ABackend::kAllToAll},
  };
  std::vector<bool> modes;
  if (mode != "deterministic") modes.push_back(false);
  if (mode != "default") modes.push_back(true);
  const std::string load_start = loadavg();
  nlohmann::json rows = nlohmann::json::array();
  for (const LayoutSpec& l : layouts) {
    if (!only.empty() && only != l.name) continue;
    std::vector<std::unique_ptr<Engine>> engines;
    for (bool det : modes) {
      EngineOptions o;
      o.max_total_tokens = batch * (prompt + steps) + 16;
      o.max_running_requests = int32_t(batch);
      o.log_interval_s = 0;
      o.parallel = {l.layout, det, l.a2a};
      engines.push_back(std::make_unique<Engine>(load_model_source(cut, "dummy", parse_dtype(dtype), 7), nullptr, o));
    }
    std::vector<Request> reqs;
    for (int64_t b = 0; b < batch; ++b) {
      Request r;
      for (int64_t i = 0; i < prompt; ++i)
        r.input_ids.push_back(int32_t((b * 7919 + i * 104729) % engines[0]->config().vocab_size));
      r.sampling.temperature = 0;
      r.sampling.max_new_tokens = int32_t(steps);
      r.sampling.ignore_eos = true;
      reqs.push_back(std::move(r));
    }
    // One unmeasured full batch per engine: the first one pays the first touches of the
    // workspace and KV pages (seconds on a loaded machine), which is not what is compared.
    for (auto& e : engines) generate_sync(*e, reqs);
    std::vector<std::vector<Run>> runs(modes.size());
    for (int64_t rep = 0; rep < repeats; ++rep)
      for (size_t m = 0; m < modes.size(); ++m) {
        Engine& e = *engines[m];
        // Every repeat prefills from scratch: flush the prefix cache and wait until the loop
        // has done it (a flush that arrives together with new requests is skipped).
        settled(e);
        SPARROW_CHECK(e.flush_cache(), "cache flush refused");
        while (e.stats().kv_cached != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        generate_sync(e, {reqs[0]});  // as before repeats existed: request 0's prompt is cached
        const EngineStats before = settled(e);
        const auto t0 = Clock::now();
        const std::vector<SyncOutput> outs = generate_sync(e, reqs);
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        const EngineStats after = settled(e);
        double cached = 0;
        for (const SyncOutput& o : outs) cached += o.result.cached_tokens;
        runs[m].push_back({secs, double(after.comm_bytes - before.comm_bytes),
                           after.scheduler_seconds - before.scheduler_seconds,
                           after.forward_seconds - before.forward_seconds, cached});
      }
    nlohmann::json row = {{"layout", l.name}};
    for (size_t m = 0; m < modes.size(); ++m) {
      std::vector<double> secs, bytes, sched, cached;
      for (const Run& r : runs[m]) {
        secs.push_back(r.seconds);
        bytes.push_back(r.comm_bytes);
        sched.push_back(r.sched / std::max(r.sched + r.fwd, 1e-12));
        cached.push_back(r.cached);
      }
      const double tokens = double(batch * (prompt + steps));  // every token passes every layer once
      const double s = median(secs);
      row[modes[m] ? "deterministic" : "default"] = {{"seconds", s},
                                                     {"seconds_runs", secs},
                                                     {"output_tokens_per_s", double(batch * steps) / s},
                                                     {"comm_bytes_per_token_per_layer", median(bytes) / tokens / double(layers)},
                                                     {"scheduler_fraction_of_step", median(sched)},
                                                     {"cached_prompt_tokens", median(cached)}};
    }
    if (modes.size() == 2) {
      row["deterministic_overhead"] =
          row["default"]["output_tokens_per_s"].get<double>() / row["deterministic"]["output_tokens_per_s"].get<double>() - 1.0;
      std::fprintf(stderr, "%-18s default %8.1f tok/s  deterministic %8.1f tok/s  overhead %5.1f%%  bytes/token/layer %10.0f / %10.0f\n",
                   l.name, row["default"]["output_tokens_per_s"].get<double>(),
                   row["deterministic"]["output_tokens_per_s"].get<double>(), 100 * row["deterministic_overhead"].get<double>(),
                   row["default"]["comm_bytes_per_token_per_layer"].get<double>(),
                   row["deterministic"]["comm_bytes_per_token_per_layer"].get<double>());
    }
    rows.push_back(row);
  }
  nlohmann::json out = {{"bench", "parallel_cpu_ranks"}, {"machine", bench::machine_json()}, {"commit", bench::git_commit()},
                        {"config", config_path},      {"layers", layers},                  {"dtype", dtype},
                        {"batch", batch},             {"prompt_tokens", prompt},           {"decode_steps", steps},
                        {"repeats", repeats},         {"loadavg_at_start", load_start},    {"loadavg_at_end", loadavg()},
                        {"note", "CPU ranks are threads sharing the machine's cores: throughput compares modes, not scaling"},
                        {"layouts", rows}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
