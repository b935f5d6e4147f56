// Parallel layouts on CPU ranks: generation throughput in default and deterministic mode
// (the cost of the fixed reduction trees), and the bytes the collectives move per token
// per layer in each layout.
//
//   build/bench/parallel_bench --config ../shared/assets/configs/qwen3-30b-a3b.json \
//       [--layers 2] [--batch 8] [--prompt 64] [--steps 16] [--dtype bfloat16] [--only LAYOUT]
//
// The model is the config's shape with dummy weights, cut to --layers layers so that it
// fits and runs quickly on a small machine (per-layer figures do not depend on depth).
// Prints one JSON object.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, dtype = "bfloat16", only;
  int64_t layers = 2, batch = 8, prompt = 64, steps = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") config_path = v;
    else if (k == "--layers") layers = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--prompt") prompt = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--dtype") dtype = v;
    else if (k == "--only") only = v;
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
  nlohmann::json rows = nlohmann::json::array();
  for (const LayoutSpec& l : layouts) {
    if (!only.empty() && only != l.name) continue;
    nlohmann::json row = {{"layout", l.name}};
    for (bool det : {false, true}) {
      EngineOptions o;
      o.max_total_tokens = batch * (prompt + steps) + 16;
      o.max_running_requests = int32_t(batch);
      o.log_interval_s = 0;
      o.parallel = {l.layout, det, l.a2a};
      Engine e(load_model_source(cut, "dummy", parse_dtype(dtype), 7), nullptr, o);
      std::vector<Request> reqs;
      for (int64_t b = 0; b < batch; ++b) {
        Request r;
        for (int64_t i = 0; i < prompt; ++i) r.input_ids.push_back(int32_t((b * 7919 + i * 104729) % e.config().vocab_size));
        r.sampling.temperature = 0;
        r.sampling.max_new_tokens = int32_t(steps);
        r.sampling.ignore_eos = true;
        reqs.push_back(std::move(r));
      }
      generate_sync(e, {reqs[0]});  // warm-up: first touches of weights and KV
      const EngineStats before = e.stats();
      const uint64_t bytes0 = before.comm_bytes;
      const auto t0 = Clock::now();
      generate_sync(e, reqs);
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      const EngineStats after = e.stats();
      const uint64_t bytes = after.comm_bytes - bytes0;
      const double sched = after.scheduler_seconds - before.scheduler_seconds;
      const double fwd = after.forward_seconds - before.forward_seconds;
      const double tokens = double(batch * (prompt + steps));  // every token passes every layer once
      nlohmann::json m = {{"seconds", secs},
                          {"output_tokens_per_s", double(batch * steps) / secs},
                          {"comm_bytes_per_token_per_layer", double(bytes) / tokens / double(layers)},
                          {"scheduler_fraction_of_step", sched / std::max(sched + fwd, 1e-12)}};
      row[det ? "deterministic" : "default"] = m;
    }
    row["deterministic_overhead"] =
        row["default"]["output_tokens_per_s"].get<double>() / row["deterministic"]["output_tokens_per_s"].get<double>() - 1.0;
    std::fprintf(stderr, "%-18s default %8.1f tok/s  deterministic %8.1f tok/s  bytes/token/layer %10.0f / %10.0f\n", l.name,
                 row["default"]["output_tokens_per_s"].get<double>(), row["deterministic"]["output_tokens_per_s"].get<double>(),
                 row["default"]["comm_bytes_per_token_per_layer"].get<double>(),
                 row["deterministic"]["comm_bytes_per_token_per_layer"].get<double>());
    rows.push_back(row);
  }
  nlohmann::json out = {{"bench", "parallel_cpu_ranks"}, {"machine", bench::machine_json()}, {"commit", bench::git_commit()},
                        {"config", config_path},      {"layers", layers},                  {"dtype", dtype},
                        {"batch", batch},             {"prompt_tokens", prompt},           {"decode_steps", steps},
                        {"note", "CPU ranks are threads sharing the machine's cores: throughput compares modes, not scaling"},
                        {"layouts", rows}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
