// Deterministic row-parallel linear vs the plain GEMM on the model's K-split shapes: the
// kernel-level cost of the leaf tree (docs/numerics.md, deterministic mode). For each
// shape and leaf count L (L = 8 is a single rank of OLMoE; 4 and 2 are a rank's share at
// TP2 and TP4, with K cut to match) it times row_parallel_linear(L) and ops::linear on the
// same operands. Weights cycle through copies larger than the last-level cache (an expert's
// weights come from DRAM in a real step). fp32 activations, bf16 weights (CPU --dtype
// bfloat16). Prints one JSON object; times are medians and minima in microseconds.
//
//   build/bench/row_parallel_bench [--reps 41] [--only NAME]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/model/layers/row_parallel.h"

using namespace sparrow;
using Clock = std::chrono::steady_clock;

namespace {

struct Case {
  const char* name;
  int64_t T, N, K;
};

struct Timing {
  double median_us, min_us;
};

template <class F>
Timing time_calls(int reps, size_t copies, F call) {
  std::vector<double> us;
  for (int r = 0; r < reps + 2; ++r) {
    const auto t0 = Clock::now();
    call(size_t(r) % copies);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r >= 2) us.push_back(s * 1e6);
  }
  return {median(us), *std::min_element(us.begin(), us.end())};
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string s;
  std::getline(f, s);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 41;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--reps") reps = std::stoi(v);
    else if (k == "--only") only = v;
    else { std::fprintf(stderr, "unknown flag %s\n", k.c_str()); return 2; }
  }
  // OLMoE-1B-7B: o_proj K = 16 heads x 128, expert down K = 1024; prefill of 8 x 64 tokens
  // (64 tokens per expert on average) and decode at batch 8 (about one token per expert).
  const Case cases[] = {{"o_proj_prefill", 512, 2048, 2048}, {"o_proj_decode", 8, 2048, 2048},
                        {"expert_down_prefill", 64, 2048, 1024}, {"expert_down_decode", 1, 2048, 1024}};
  const std::string load_start = loadavg();
  nlohmann::json rows = nlohmann::json::array();
  for (const Case& c : cases) {
    if (!only.empty() && only != c.name) continue;
    for (int leaves : {8, 4, 2}) {
      const int64_t k = c.K * leaves / 8;  // a rank's share of K at TP 8 / leaves
      const size_t wbytes = size_t(c.N * k) * 2;
      const size_t copies = std::max<size_t>(2, ((size_t(256) << 20) + wbytes - 1) / wbytes);
      std::vector<Buffer> w;
      for (size_t i = 0; i < copies; ++i) {
        w.emplace_back(DType::kBF16, Shape{c.N, k});
        uint16_t* p = w.back().tensor().data_as<uint16_t>();
        for (int64_t j = 0; j < c.N * k; ++j) p[j] = uint16_t(0x3c00 + (j * 7919 + int64_t(i)) % 0x200);
      }
      Buffer x(DType::kF32, {c.T, k}), y(DType::kF32, {c.T, c.N});
      for (int64_t j = 0; j < c.T * k; ++j) x.tensor().data_as<float>()[j] = float(j % 17) * 0.01f - 0.08f;
      const Timing plain = time_calls(reps, copies, [&](size_t i) { ops::linear(x.tensor(), w[i].tensor(), nullptr, y.tensor()); });
      const Timing tree =
          time_calls(reps, copies, [&](size_t i) { row_parallel_linear(x.tensor(), w[i].tensor(), leaves, y.tensor()); });
      rows.push_back({{"case", c.name}, {"T", c.T}, {"N", c.N}, {"K", k}, {"leaves", leaves},
                      {"linear_median_us", plain.median_us}, {"linear_min_us", plain.min_us},
                      {"leaves_median_us", tree.median_us}, {"leaves_min_us", tree.min_us},
                      {"overhead_median", tree.median_us / plain.median_us - 1.0},
                      {"overhead_min", tree.min_us / plain.min_us - 1.0}});
      std::fprintf(stderr, "%-20s T=%-4ld K=%-5ld L=%d  linear %9.1f us  leaves %9.1f us  overhead %6.1f%% (min %6.1f%%)\n",
                   c.name, long(c.T), long(k), leaves, plain.median_us, tree.median_us,
                   100 * (tree.median_us / plain.median_us - 1), 100 * (tree.min_us / plain.min_us - 1));
    }
  }
  nlohmann::json out = {{"bench", "row_parallel_cpu"}, {"machine", bench::machine_json()}, {"commit", bench::git_commit()},
                        {"reps", reps}, {"loadavg_at_start", load_start}, {"loadavg_at_end", loadavg()},
                        {"cases", rows}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
