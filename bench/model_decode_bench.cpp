// CPU decode and prefill throughput of a whole model at a real shape with dummy weights,
// next to the machine's measured memory bandwidth (the roofline for batch-1 decode).
//
//   build/bench/model_decode_bench --config ../shared/assets/configs/olmoe-1b-7b-0924.json
//       [--prompt 128] [--steps 16] [--batch 1] [--dtype bfloat16]   (one line)
//
// Prints one JSON object: machine, commit, bandwidth, prefill tok/s, decode tok/s (median
// step), bytes each decode step must read, and the fraction of the bandwidth roofline.
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "sparrow/core/thread_pool.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/model/model.h"

using namespace sparrow;
using Clock = std::chrono::steady_clock;


int main(int argc, char** argv) {
  std::string config_path, dtype_name_arg = "bfloat16";
  int64_t prompt = 128, steps = 16, batch = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") config_path = v;
    else if (k == "--prompt") prompt = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--dtype") dtype_name_arg = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  if (config_path.empty()) { std::fprintf(stderr, "--config PATH is required\n"); return 2; }
  const DType dt = parse_dtype(dtype_name_arg);
  const double bandwidth = bench::measure_read_bandwidth_gbs();

  const auto t_load = Clock::now();
  LoadedModel m = load_model(config_path, "dummy", dt, 1234);
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  const ModelConfig& c = m.config;

  const int64_t max_ctx = prompt + steps + 1;
  KVPool kv(c.num_layers, batch * max_ctx, c.num_kv_heads, c.head_dim, dt);
  SlotAllocator slot_alloc(batch * max_ctx);
  ReqToTokenPool rtt(int32_t(batch), max_ctx);
  Arena ws(m.model->workspace_bytes(std::max(prompt * batch, batch)));
  std::vector<int32_t> req(static_cast<size_t>(batch));
  std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    req[size_t(b)] = rtt.alloc();
    for (int64_t i = 0; i < prompt; ++i) tokens[size_t(b)].push_back(int32_t((b * 7919 + i * 104729) % c.vocab_size));
  }

  // Prefill all sequences in one extend batch.
  ForwardBatch fb;
  std::vector<int32_t> slots;
  for (int64_t b = 0; b < batch; ++b) {
    slots.clear();
    slot_alloc.alloc(prompt, slots);
    std::copy(slots.begin(), slots.end(), rtt.row(req[size_t(b)]));
    fb.add_sequence(req[size_t(b)], 0, tokens[size_t(b)].data(), slots.data(), int32_t(prompt));
    fb.logit_rows.push_back(fb.num_tokens() - 1);
  }
  Buffer logits(DType::kF32, {batch, c.vocab_size});
  const auto t_pre = Clock::now();
  m.model->forward(fb, kv, rtt, ws, logits.tensor());
  const double prefill_s = std::chrono::duration<double>(Clock::now() - t_pre).count();

  std::vector<double> step_s;
  for (int64_t s = 0; s < steps; ++s) {
    ForwardBatch d;
    d.mode = ForwardMode::kDecode;
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t tok = int32_t((s * 31 + b) % c.vocab_size);
      const int32_t pos = int32_t(prompt + s);
      slots.clear();
      slot_alloc.alloc(1, slots);
      rtt.row(req[size_t(b)])[pos] = slots[0];
      d.add_sequence(req[size_t(b)], pos, &tok, slots.data(), 1);
      d.logit_rows.push_back(d.num_tokens() - 1);
    }
    const auto t = Clock::now();
    m.model->forward(d, kv, rtt, ws, logits.tensor());
    step_s.push_back(std::chrono::duration<double>(Clock::now() - t).count());
  }
  const double median_step = bench::median(step_s);
  const double bytes = bench::decode_bytes_per_step(c, batch, dtype_size(dt));
  const double achieved = bytes / median_step / 1e9;
  nlohmann::json out = {
      {"bench", "model_decode"},
      {"machine", bench::machine_json()},
      {"commit", bench::git_commit()},
      {"config", config_path},
      {"model_type", c.model_type},
      {"dtype", std::string(dtype_name(dt))},
      {"threads", ThreadPool::global().size()},
      {"batch", batch},
      {"prompt_tokens", prompt},
      {"decode_steps", steps},
      {"dummy_load_s", load_s},
      {"read_bandwidth_gbs", bandwidth},
      {"prefill_tokens_per_s", double(prompt * batch) / prefill_s},
      {"decode_step_median_ms", median_step * 1e3},
      {"decode_tokens_per_s", double(batch) / median_step},
      {"decode_bytes_per_step_gb", bytes / 1e9},
      {"decode_achieved_gbs", achieved},
      {"roofline_tokens_per_s", double(batch) * bandwidth * 1e9 / bytes},
      {"fraction_of_roofline", achieved / bandwidth},
  };
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
