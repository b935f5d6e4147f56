// MoE layer time on the GPU at the Qwen3-30B-A3B shape (128 experts, top-8, hidden 2048,
// moe intermediate 768, bf16) for 1 .. 2048 tokens, next to the bandwidth floor computed
// in the same run: expected distinct experts touched x bytes per expert / measured
// device-to-device copy bandwidth (bytes read + written). Cold L2: the L2 is flushed
// (a 512 MiB memset) before every timed iteration and inputs rotate over 8 sets. Times are
// medians of CUDA-event intervals around one layer (eager launches, and the same layer as a
// replayed CUDA graph). Baseline: the same experts as per-expert cuBLASLt GEMMs on
// host-grouped rows (GEMMs + silu only, like the vLLM fused_moe GEMM-only peer number).
// Usage: gpu_moe_layer_bench [out.json]; SPARROW_MOE_BENCH_TOKENS=a,b,... runs those token
// counts instead (any sizes, e.g. prefill steps of 4096 / 8192; no peer figure beyond 2048).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bench_common.h"
#include "sparrow/core/cuda/device.h"
#include "sparrow/kernels/cuda/ops_cuda.h"

using namespace sparrow;
using nlohmann::json;

namespace {

constexpr int64_t kE = 128, kK = 8, kH = 2048, kI = 768;
constexpr double kBytesPerExpert = 3.0 * kH * kI * 2;  // gate + up + down, bf16: 9.437 MB
constexpr double kPeerVllmUs[] = {45.8, 178.5, 376.8, 423.8, 448.9, 536.9};
const std::vector<int64_t> kTokens = {1, 8, 32, 128, 512, 2048};

void fill_random_bf16(void* dev, size_t n, float scale, uint32_t seed) {
  std::vector<uint16_t> h(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (auto& v : h) v = f32_to_bf16(d(rng));
  cuda::copy_bytes(dev, h.data(), n * 2, cudaMemcpyHostToDevice);
}

std::string shell(const char* cmd) {
  std::string out;
  if (FILE* f = popen(cmd, "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, f)) out += buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

struct Timer {
  cudaEvent_t a, b;
  Timer() { cudaEventCreate(&a); cudaEventCreate(&b); }
  ~Timer() { cudaEventDestroy(a); cudaEventDestroy(b); }
  template <typename F>
  double run_us(F&& f, cudaStream_t s) {
    SPARROW_CUDA_CHECK(cudaEventRecord(a, s));
    f();
    SPARROW_CUDA_CHECK(cudaEventRecord(b, s));
    SPARROW_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    SPARROW_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    return double(ms) * 1e3;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const auto info = cuda::device_info();
  cuda::Stream stream;
  cuda::StreamGuard guard(stream.get());
  const cudaStream_t s = stream.get();

  // ---- measured bandwidth: D2D copy of 2 GiB (read + write counted)
  const size_t copy_bytes = size_t(2) << 30;
  cuda::DeviceBuffer c0(copy_bytes), c1(copy_bytes);
  SPARROW_CUDA_CHECK(cudaMemsetAsync(c0.data(), 1, copy_bytes, s));
  Timer timer;
  std::vector<double> bw;
  for (int i = 0; i < 12; ++i) {
    const double us = timer.run_us([&] { SPARROW_CUDA_CHECK(cudaMemcpyAsync(c1.data(), c0.data(), copy_bytes, cudaMemcpyDeviceToDevice, s)); }, s);
    if (i >= 2) bw.push_back(2.0 * double(copy_bytes) / (us * 1e-6) / 1e12);
  }
  const double bw_tbs = bench::median(bw);
  c0 = cuda::DeviceBuffer();
  c1 = cuda::DeviceBuffer();

  // ---- weights (random, not zeros), inputs, workspace
  cuda::DeviceBuffer w13(DType::kBF16, {kE, 2 * kI, kH}), w2(DType::kBF16, {kE, kH, kI}), router(DType::kBF16, {kE, kH});
  fill_random_bf16(w13.data(), size_t(w13.tensor().numel()), 0.03f, 1);
  fill_random_bf16(w2.data(), size_t(w2.tensor().numel()), 0.03f, 2);
  fill_random_bf16(router.data(), size_t(router.tensor().numel()), 0.05f, 3);

  std::vector<int64_t> tokens = kTokens;
  if (const char* only_env = std::getenv("SPARROW_MOE_BENCH_TOKENS")) {
    tokens.clear();
    for (const char* c = only_env; *c;) {
      char* end = nullptr;
      const long long v = std::strtoll(c, &end, 10);
      if (end == c || v <= 0 || (*end != ',' && *end != '\0')) {
        std::fprintf(stderr, "SPARROW_MOE_BENCH_TOKENS: '%s' is not a list of positive token counts\n", only_env);
        return 2;
      }
      tokens.push_back(v);
      c = *end == ',' ? end + 1 : end;
    }
  }
  if (tokens.empty()) {
    std::fprintf(stderr, "SPARROW_MOE_BENCH_TOKENS: no token counts\n");
    return 2;
  }
  const auto peer_us = [&](int64_t T) {
    for (size_t i = 0; i < kTokens.size(); ++i)
      if (kTokens[i] == T) return kPeerVllmUs[i];
    return 0.0;
  };

  constexpr int kSets = 8;
  const int64_t tmax = *std::max_element(tokens.begin(), tokens.end());
  std::vector<cuda::DeviceBuffer> xs;
  for (int i = 0; i < kSets; ++i) {
    xs.emplace_back(DType::kBF16, Shape{tmax, kH});
    fill_random_bf16(xs.back().data(), size_t(tmax * kH), 1.0f, 100 + uint32_t(i));
  }
  cuda::DeviceBuffer out(DType::kBF16, {tmax, kH});
  cuda::DeviceBuffer wsbuf(ops::cuda::moe_workspace_bytes(tmax, int(kK), kE, kH, kI) + (size_t(64) << 20));
  Arena ws("bench", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
  const size_t flush_bytes = size_t(512) << 20;
  cuda::DeviceBuffer flush(flush_bytes);
  auto flush_l2 = [&] { SPARROW_CUDA_CHECK(cudaMemsetAsync(flush.data(), 0, flush_bytes, s)); };
  // baseline scratch
  cuda::DeviceBuffer gx(DType::kBF16, {tmax * kK, kH}), gu(DType::kBF16, {tmax * kK, 2 * kI}),
      act(DType::kBF16, {tmax * kK, kI}), dy(DType::kF32, {tmax * kK, kH});

  const char* baseline_env = std::getenv("SPARROW_MOE_BENCH_BASELINE");
  const bool with_baseline = !(baseline_env && baseline_env[0] == '0');
  auto env_or = [](const char* name, const char* dflt) {
    const char* e = std::getenv(name);
    return std::string(e ? e : dflt);
  };
  json rows = json::array();
  std::printf("%6s %10s %10s %10s %10s %10s %8s %10s %8s\n", "tokens", "experts", "floor_us", "layer_us", "graph_us",
              "experts_us", "x_floor", "cublas_us", "vllm_us");
  for (const int64_t T : tokens) {
    const double expected = double(kE) * (1.0 - std::pow(1.0 - double(kK) / double(kE), double(T)));
    const double floor_us = expected * kBytesPerExpert / (bw_tbs * 1e12) * 1e6;
    const double floor_335 = expected * kBytesPerExpert / 3.35e12 * 1e6;
    auto layer = [&](int set) {
      ops::cuda::moe_forward(xs[size_t(set)].tensor().slice_rows(0, T), router.tensor(), w13.tensor(), w2.tensor(), int(kK), true, ws,
                             out.tensor().slice_rows(0, T));
    };
    // eager
    std::vector<double> eager;
    for (int it = 0; it < 60; ++it) {
      flush_l2();
      const double us = timer.run_us([&] { layer(it % kSets); }, s);
      if (it >= 10) eager.push_back(us);
    }
    // graphs (one per input set)
    std::vector<cudaGraphExec_t> execs;
    for (int set = 0; set < kSets; ++set) {
      cudaGraph_t g;
      SPARROW_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      layer(set);
      SPARROW_CUDA_CHECK(cudaStreamEndCapture(s, &g));
      cudaGraphExec_t e;
      SPARROW_CUDA_CHECK(cudaGraphInstantiate(&e, g, 0));
      cudaGraphDestroy(g);
      execs.push_back(e);
    }
    std::vector<double> graph;
    for (int it = 0; it < 60; ++it) {
      flush_l2();
      const double us = timer.run_us([&] { SPARROW_CUDA_CHECK(cudaGraphLaunch(execs[size_t(it % kSets)], s)); }, s);
      if (it >= 10) graph.push_back(us);
    }
    for (auto e : execs) cudaGraphExecDestroy(e);

    // experts only (grouping + the two grouped GEMMs), from precomputed routing
    const size_t mark = ws.used();
    const Tensor logits = ws.alloc(DType::kF32, {T, kE});
    auto* ids = ws.alloc_array<int32_t>(size_t(T * kK));
    auto* wts = ws.alloc_array<float>(size_t(T * kK));
    const Tensor slot = ws.alloc(DType::kF32, {T * kK, kH});
    std::vector<double> experts_us;
    std::set<int32_t> distinct;
    for (int it = 0; it < 40; ++it) {
      const Tensor x = xs[size_t(it % kSets)].tensor().slice_rows(0, T);
      ops::cuda::linear(x, router.tensor(), nullptr, logits);
      ops::cuda::route_topk_softmax(logits, int(kK), true, ids, wts);
      flush_l2();
      const double us = timer.run_us([&] { ops::cuda::moe_experts(x, ids, wts, int(kK), w13.tensor(), w2.tensor(), ws, slot); }, s);
      if (it >= 8) experts_us.push_back(us);
      if (it == 0) {
        std::vector<int32_t> h(size_t(T * kK));
        cuda::copy_bytes(h.data(), ids, h.size() * 4, cudaMemcpyDeviceToHost);
        distinct.insert(h.begin(), h.end());
      }
    }
    // cuBLASLt per-expert baseline (GEMMs + silu only; grouping done on the host).
    // SPARROW_MOE_BENCH_BASELINE=0 skips it (A/B runs of our own kernels).
    std::vector<double> cublas_us;
    if (with_baseline) {
      std::vector<int32_t> h(size_t(T * kK));
      cuda::copy_bytes(h.data(), ids, h.size() * 4, cudaMemcpyDeviceToHost);
      std::vector<std::vector<int64_t>> rows_of(kE);
      for (int64_t i = 0; i < T * kK; ++i) rows_of[size_t(h[size_t(i)])].push_back(i / kK);
      // gathered rows (content irrelevant to timing; random)
      int64_t off = 0;
      std::vector<std::pair<int64_t, int64_t>> seg(kE);
      for (int64_t e = 0; e < kE; ++e) { seg[size_t(e)] = {off, int64_t(rows_of[size_t(e)].size())}; off += seg[size_t(e)].second; }
      SPARROW_CUDA_CHECK(cudaMemcpyAsync(gx.data(), xs[0].data(), size_t(T * kK * kH * 2) <= size_t(tmax * kH * 2) ? size_t(T * kK * kH * 2) : size_t(tmax * kH * 2), cudaMemcpyDeviceToDevice, s));
      auto run = [&] {
        for (int64_t e = 0; e < kE; ++e) {
          const auto [b, n] = seg[size_t(e)];
          if (!n) continue;
          const Tensor w13e(static_cast<uint16_t*>(w13.data()) + e * 2 * kI * kH, DType::kBF16, {2 * kI, kH}, Device::kCUDA);
          const Tensor w2e(static_cast<uint16_t*>(w2.data()) + e * kH * kI, DType::kBF16, {kH, kI}, Device::kCUDA);
          const Tensor gue = gu.tensor().slice_rows(b, b + n);
          ops::cuda::linear_with(ops::cuda::GemmBackend::kCublasLt, gx.tensor().slice_rows(b, b + n), w13e, nullptr, gue);
          const Tensor ge(gue.data(), DType::kBF16, {n, 2 * kI}, Device::kCUDA);
          // silu_mul over the two halves: strided halves need contiguous views; use act as scratch
          ops::cuda::silu_mul(Tensor(ge.data(), DType::kBF16, {n, kI}, Device::kCUDA),
                              Tensor(static_cast<uint16_t*>(ge.data()) + n * kI, DType::kBF16, {n, kI}, Device::kCUDA),
                              act.tensor().slice_rows(b, b + n));
          ops::cuda::linear_with(ops::cuda::GemmBackend::kCublasLt, act.tensor().slice_rows(b, b + n), w2e, nullptr,
                                 dy.tensor().slice_rows(b, b + n));
        }
      };
      for (int it = 0; it < 25; ++it) {
        flush_l2();
        const double us = timer.run_us(run, s);
        if (it >= 5) cublas_us.push_back(us);
      }
    }
    ws.rewind(mark);

    const double le = bench::median(eager), lg = bench::median(graph), ex = bench::median(experts_us),
                 cb = cublas_us.empty() ? 0.0 : bench::median(cublas_us);
    std::printf("%6lld %10.1f %10.1f %10.1f %10.1f %10.1f %8.2f %10.1f %8.1f\n", (long long)T, expected, floor_us, le,
                lg, ex, lg / floor_us, cb, peer_us(T));
    std::fflush(stdout);
    rows.push_back({{"tokens", T},
                    {"expected_distinct_experts", expected},
                    {"distinct_experts_first_input", distinct.size()},
                    {"floor_us_measured_bw", floor_us},
                    {"floor_us_3_35_tbs", floor_335},
                    {"layer_us_eager", le},
                    {"layer_us_graph", lg},
                    {"experts_only_us", ex},
                    {"layer_graph_over_floor", lg / floor_us},
                    {"layer_graph_over_floor_3_35", lg / floor_335},
                    {"cublaslt_per_expert_gemms_us", cb},
                    {"peer_vllm_triton_fused_moe_gemms_us", peer_us(T)}});
  }

  json j;
  j["benchmark"] = "gpu_moe_layer";
  j["shape"] = {{"experts", kE}, {"top_k", kK}, {"hidden", kH}, {"moe_intermediate", kI}, {"dtype", "bf16"},
                {"bytes_per_expert", kBytesPerExpert}};
  j["gpu"] = {{"name", info.name},
              {"sm_count", info.sm_count},
              {"l2_bytes", info.l2_bytes},
              {"max_sm_clock_mhz", info.sm_clock_mhz},
              {"max_mem_clock_mhz", info.mem_clock_mhz},
              {"mem_bus_bits", info.mem_bus_bits},
              {"nvidia_smi_clocks", shell("nvidia-smi --query-gpu=clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader 2>/dev/null")}};
  j["measured_d2d_bandwidth_tbs"] = bw_tbs;
  j["method"] = "median of CUDA-event intervals; L2 flushed (512 MiB memset) before each timed iteration; 8 rotating "
                "input sets; random bf16 weights and inputs; expert GEMMs: SPARROW_MOE_GEMM (auto: wgmma, gemm_wgmma.cu, "
                "from ops::cuda::kMoeWgmmaMinPairs pairs, else mma.sync, gemm.cu; 1-4 tokens: the skinny kernels)";
  j["moe_gemm"] = env_or("SPARROW_MOE_GEMM", "auto");
  j["commit"] = bench::git_commit();
  j["results"] = rows;
  const std::string text = j.dump(2);
  std::printf("%s\n", text.c_str());
  if (argc > 1) std::ofstream(argv[1]) << text << "\n";
  return 0;
}
