// Decode (and prefill) throughput of a whole model on one GPU at a real shape with dummy
// weights, through the same executor `sparrow serve --device cuda` uses (DeviceRunner:
// uploads, decode CUDA graphs, token ids or logits back to the host), next to the bandwidth roofline
// measured in the same run: weight bytes one decode step must read (attention, the expected
// distinct experts touched by `batch` tokens, router, lm_head) / device-to-device copy
// bandwidth (bytes read + written).
//
//   gpu_decode_bench --config tests/testdata/configs/qwen3-30b-a3b.json
//       [--batches 1,8,32,128] [--prompt 256] [--steps 64] [--layouts 1x1,2x1,2x2]
//       [--max-context N] [--enable-deterministic-inference] [--out result.json]  (one line)
// --max-context: the engine's context length (the request table's width, which sets the
// attention's fixed split size) when above prompt + steps; a server takes the model's.
// --layouts: TPxEP per run, one after another on the same weights (generated once). TP N runs
// on N GPUs over NCCL (the `none` MoE layout, experts split over EP groups); its roofline
// counts all N GPUs' memory (N x the measured bandwidth of GPU 0), tokens/s per GPU beside,
// and the collective bytes each step moved (NCCL traffic received, all ranks).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "sparrow/core/cuda/device.h"
#include "sparrow/engine/model_executor.h"

using namespace sparrow;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

double d2d_bandwidth_tbs() {
  const size_t bytes = size_t(2) << 30;
  cuda::DeviceBuffer a(bytes), b(bytes);
  SPARROW_CUDA_CHECK(cudaMemset(a.data(), 1, bytes));
  cudaEvent_t e0, e1;
  SPARROW_CUDA_CHECK(cudaEventCreate(&e0));
  SPARROW_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> bw;
  for (int i = 0; i < 10; ++i) {
    SPARROW_CUDA_CHECK(cudaEventRecord(e0));
    SPARROW_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice));
    SPARROW_CUDA_CHECK(cudaEventRecord(e1));
    SPARROW_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    SPARROW_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) bw.push_back(2.0 * double(bytes) / (double(ms) * 1e-3) / 1e12);
  }
  return bench::median(bw);
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) v.push_back(std::stoll(item));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = std::string(SPARROW_SOURCE_DIR) + "/tests/testdata/configs/qwen3-30b-a3b.json", out_path;
  std::vector<int64_t> batches = {1, 8, 32, 128};
  int64_t prompt = 256, steps = 64, max_context_flag = 0;
  bool graphs = true, deterministic = false;
  std::vector<std::pair<int, int>> layouts = {{1, 1}};
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--disable-cuda-graph") { graphs = false; continue; }
    if (k == "--enable-deterministic-inference") { deterministic = true; continue; }
    if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", k.c_str()); return 2; }
    const std::string v = argv[++i];
    if (k == "--config") config_path = v;
    else if (k == "--batches") batches = parse_list(v);
    else if (k == "--prompt") prompt = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--max-context") max_context_flag = std::stoll(v);
    else if (k == "--out") out_path = v;
    else if (k == "--layouts") {
      layouts.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) {
        const size_t x = item.find('x');
        layouts.emplace_back(std::stoi(item.substr(0, x)), x == std::string::npos ? 1 : std::stoi(item.substr(x + 1)));
      }
    }
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  const auto info = cuda::device_info();
  const double bw = d2d_bandwidth_tbs();
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());

  const auto t_load = Clock::now();
  LoadedModel m = load_model_source(config_path, "dummy", DType::kBF16, 1234);
  const ModelConfig& c = m.config;
  json rows = json::array();
  double load_s = 0;
  for (const auto& [tp, ep] : layouts) {
    ParallelOptions par;
    par.layout.tp_size = tp;
    par.layout.ep_size = ep;
    par.deterministic = deterministic;
    const auto t_layout = Clock::now();
    const int64_t ctx = prompt + steps + 8, slots = max_batch * ctx;
    DeviceOptions d;
    d.cuda_graphs = graphs;
    d.cuda_graph_max_bs = max_batch;
    d.max_batch = max_batch;
    d.max_context = std::max(ctx, max_context_flag);
    ModelExecutor ex(c, *m.source, DType::kBF16, DType::kBF16, par, slots,
                     std::max<int64_t>(prompt * std::min<int64_t>(max_batch, 16), max_batch), Device::kCUDA, d);
    load_s = std::max(load_s, std::chrono::duration<double>(Clock::now() - (rows.empty() ? t_load : t_layout)).count());
    for (int64_t batch : batches) {
      SlotAllocator alloc(slots);
      ReqToTokenPool rtt(int32_t(max_batch), d.max_context);
      std::vector<int32_t> req;
      std::vector<int32_t> got;
      const Buffer logits = ex.logits_buffer(batch, c.vocab_size);  // pinned, as the engine's
      const ForwardBatch* bp[1];
      const ReqToTokenPool* tables[1] = {&rtt};
      const Tensor lt[1] = {logits.tensor()};
      // Prefill in extend batches of at most 16 sequences (the workspace's size), built once
      // and run kPrefillPasses times (each pass writes the same KV slots): the median pass
      // is reported, so first-use costs (cuBLASLt heuristics, lazy allocations) do not count.
      std::vector<ForwardBatch> prefill;
      for (int64_t b0 = 0; b0 < batch; b0 += 16) {
        ForwardBatch& fb = prefill.emplace_back();
        for (int64_t b = b0; b < std::min(batch, b0 + 16); ++b) {
          req.push_back(rtt.alloc());
          std::vector<int32_t> toks;
          for (int64_t i = 0; i < prompt; ++i) toks.push_back(int32_t((b * 7919 + i * 104729) % c.vocab_size));
          got.clear();
          alloc.alloc(prompt, got);
          std::copy(got.begin(), got.end(), rtt.row(req.back()));
          fb.add_sequence(req.back(), 0, toks.data(), got.data(), int32_t(prompt));
          fb.logit_rows.push_back(fb.num_tokens() - 1);
        }
      }
      constexpr int kPrefillPasses = 3;
      std::vector<double> prefill_pass_s;
      for (int pass = 0; pass < kPrefillPasses; ++pass) {
        double total = 0;
        for (const ForwardBatch& fb : prefill) {
          Buffer pl(DType::kF32, {int64_t(fb.logit_rows.size()), c.vocab_size});
          const Tensor plt[1] = {pl.tensor()};
          bp[0] = &fb;
          const auto t = Clock::now();
          ex.step(bp, tables, plt);
          total += std::chrono::duration<double>(Clock::now() - t).count();
        }
        prefill_pass_s.push_back(total);
      }
      const double prefill_s = bench::median(prefill_pass_s);
      // Steps cycle: the logits rows to the host (what a step with logprobs or penalties
      // does), greedy token ids, sampled token ids (both chosen on the device).
      std::vector<double> step_s, sampled_step_s, logits_step_s;
      const uint64_t comm0 = ex.comm_bytes();  // collective traffic of the decode steps
      int64_t comm_steps = 0;
      std::vector<int32_t> ids(static_cast<size_t>(batch));
      int32_t* ip[1] = {ids.data()};
      for (int64_t s = 0; s < steps; ++s) {
        ForwardBatch dbatch;
        dbatch.mode = ForwardMode::kDecode;
        for (int64_t b = 0; b < batch; ++b) {
          const int32_t tok = int32_t((s * 31 + b) % c.vocab_size), pos = int32_t(prompt + s);
          got.clear();
          alloc.alloc(1, got);
          rtt.row(req[size_t(b)])[pos] = got[0];
          dbatch.add_sequence(req[size_t(b)], pos, &tok, got.data(), 1);
          dbatch.logit_rows.push_back(dbatch.num_tokens() - 1);
        }
        if (s % 3 != 0)  // 1: greedy, 2: seeded sampling with top-k / top-p, both on the device
          for (int64_t b = 0; b < batch; ++b)
            dbatch.sampling.push_back(s % 3 == 1 ? RowSampling{} : RowSampling{0.8f, 50, 0.95f, 0.0f, uint64_t(b), prompt + s});
        bp[0] = &dbatch;
        const auto t = Clock::now();
        ex.step(bp, tables, lt, ip);
        ++comm_steps;
        if (s >= 3) (s % 3 == 1 ? step_s : s % 3 == 2 ? sampled_step_s : logits_step_s).push_back(std::chrono::duration<double>(Clock::now() - t).count());
      }
      const double med = bench::median(step_s), med_logits = bench::median(logits_step_s);
      const double med_sampled = bench::median(sampled_step_s);
      const double bytes = bench::decode_bytes_per_step(c, batch, 2);
      const int gpus = par.layout.tp_size;
      const double comm_per_step = double(ex.comm_bytes() - comm0) / double(std::max<int64_t>(comm_steps, 1));
      const double roof = double(batch) * bw * double(gpus) * 1e12 / bytes;
      rows.push_back({{"layout", {{"tp_size", par.layout.tp_size}, {"ep_size", par.layout.ep_size}, {"gpus", gpus}}},
                      {"batch", batch},
                      {"prefill_tokens_per_s", double(prompt * batch) / prefill_s},
                      {"decode_step_median_ms", med * 1e3},
                      {"decode_tokens_per_s", double(batch) / med},
                      {"decode_tokens_per_s_per_gpu", double(batch) / med / gpus},
                      {"decode_step_logits_to_host_median_ms", med_logits * 1e3},
                      {"decode_tokens_per_s_logits_to_host", double(batch) / med_logits},
                      {"decode_step_sampled_on_device_median_ms", med_sampled * 1e3},
                      {"decode_tokens_per_s_sampled_on_device", double(batch) / med_sampled},
                      {"decode_bytes_per_step_gb", bytes / 1e9},
                      {"roofline_tokens_per_s", roof},
                      {"fraction_of_roofline", double(batch) / med / roof},
                      {"collective_bytes_per_step_mb", comm_per_step / 1e6}});
      std::fprintf(stderr, "tp %d ep %d batch %lld: %.1f tok/s (%.1f%% of roofline %.0f; logits to host %.1f tok/s)\n", tp, ep, (long long)batch,
                   double(batch) / med, 100.0 * double(batch) / med / roof, roof, double(batch) / med_logits);
    }
  }
  json j;
  j["benchmark"] = "gpu_decode";
  j["config"] = config_path;
  j["model_type"] = c.model_type;
  j["dtype"] = "bfloat16";
  j["load_format"] = "dummy";
  j["cuda_graphs"] = graphs;
  j["deterministic"] = deterministic;
  j["moe_a2a_backend"] = "none";
  j["prompt_tokens"] = prompt;
  j["decode_steps"] = steps;
  j["max_context"] = std::max(prompt + steps + 8, max_context_flag);
  j["gpu"] = {{"name", info.name}, {"sm_count", info.sm_count}, {"max_sm_clock_mhz", info.sm_clock_mhz},
              {"max_mem_clock_mhz", info.mem_clock_mhz}, {"mem_bus_bits", info.mem_bus_bits}};
  j["measured_d2d_bandwidth_tbs"] = bw;
  j["load_s"] = load_s;
  j["method"] = "median wall time of executor steps (upload + graph replay or eager forward + the step's output "
                "on the host), after 3 warm-up steps, steps cycling through: logits rows to the host's pinned buffer "
                "(decode_tokens_per_s_logits_to_host), greedy token ids chosen on the device (decode_tokens_per_s), "
                "seeded sampling (T 0.8, top-k 50, top-p 0.95) on the device (decode_tokens_per_s_sampled_on_device); "
                "tok/s = batch / step; prefill_tokens_per_s: prompt tokens over the median of 3 passes of the "
                "prefill's extend steps (at most 16 sequences each; every pass writes the same KV slots)";
  j["commit"] = bench::git_commit();
  j["results"] = rows;
  const std::string text = j.dump(2);
  std::printf("%s\n", text.c_str());
  if (!out_path.empty()) std::ofstream(out_path) << text << "\n";
  return 0;
}
