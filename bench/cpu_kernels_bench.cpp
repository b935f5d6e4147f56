// CPU kernel benchmark: memory read bandwidth, ops::linear (decode GB/s and fraction of
// read bandwidth, prefill GFLOP/s), ops::paged_attention decode latency. Prints one JSON
// document to stdout. Figures are medians over repeated runs; inputs are cycled through
// enough copies (>= 512 MiB) that weights and KV come from DRAM, as in real decoding.
//
//   build/bench/cpu_kernels_bench [--quick] [--only=bandwidth|linear|attention]
// SPARROW_NUM_THREADS sets the thread count; SPARROW_GIT_COMMIT overrides `git rev-parse`.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sparrow/core/thread_pool.h"
#include "sparrow/kernels/cpu/cpu_features.h"
#include "sparrow/kernels/ops.h"

using namespace sparrow;
using Clock = std::chrono::steady_clock;

namespace {

bool g_quick = false;
bool g_decode_only = false;  // --decode-only: AVX-512 T=1/8 linear only (tuning)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      return c == std::string::npos ? line : line.substr(c + 2);
    }
  return "unknown";
}

std::string git_commit() {
  if (const char* e = std::getenv("SPARROW_GIT_COMMIT")) return e;
  std::string cmd = std::string("git -C '") + SPARROW_SOURCE_DIR + "' rev-parse HEAD 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "unknown";
  char buf[128] = {};
  std::string out = fgets(buf, sizeof buf, p) ? buf : "unknown";
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// Sums 64-byte blocks; compiled for AVX2 so one core can issue enough loads.
__attribute__((target("avx2"))) uint64_t read_sum_avx2(const uint64_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
    a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
  }
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

uint64_t read_sum(const uint64_t* p, size_t n) {
  if (__builtin_cpu_supports("avx2")) return read_sum_avx2(p, n);
  uint64_t a = 0;
  for (size_t i = 0; i < n; ++i) a += p[i];
  return a;
}

volatile uint64_t g_sink;

// STREAM-like read bandwidth: every thread sums its contiguous share of a buffer.
nlohmann::json measure_bandwidth() {
  const size_t bytes = size_t(g_quick ? 256 : 1536) << 20;
  Buffer buf(bytes);
  std::memset(buf.data(), 1, bytes);
  const uint64_t* p = static_cast<const uint64_t*>(buf.data());
  const size_t n = bytes / 8, chunk = 1 << 16;  // 512 KiB units
  std::vector<double> gbs;
  for (int rep = 0; rep < (g_quick ? 3 : 9); ++rep) {
    std::atomic<uint64_t> total{0};
    const auto t0 = Clock::now();
    ThreadPool::global().parallel_for(int64_t(n / chunk), [&](int64_t b, int64_t e) {
      total += read_sum(p + size_t(b) * chunk, size_t(e - b) * chunk);
    });
    const double s = seconds_since(t0);
    g_sink = total.load();
    if (rep > 0) gbs.push_back(double(bytes) / s / 1e9);  // first run is warm-up
  }
  return {{"buffer_mib", bytes >> 20}, {"runs", gbs.size()}, {"read_gbs_median", median(gbs)},
          {"read_gbs_max", *std::max_element(gbs.begin(), gbs.end())}};
}

struct LinearCase {
  const char* name;
  int64_t N, K;
};

// Median seconds per ops::linear call, cycling through weight copies that together exceed
// the last-level cache.
double time_linear(int64_t T, int64_t N, int64_t K, DType xdt, DType dt, int reps) {
  const size_t wbytes = size_t(N * K) * dtype_size(dt);
  const size_t copies = std::max<size_t>(2, ((size_t(g_quick ? 128 : 512) << 20) + wbytes - 1) / wbytes);
  std::vector<Buffer> ws;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> d(0, 0x3f7f);
  for (size_t c = 0; c < copies; ++c) {
    ws.emplace_back(dt, Shape{N, K});
    if (dt == DType::kBF16) {
      uint16_t* w = ws.back().tensor().data_as<uint16_t>();
      for (int64_t i = 0; i < N * K; ++i) w[i] = uint16_t(0x3c00 + (i * 7919 + int64_t(c)) % 0x200);
    } else {
      float* w = ws.back().tensor().data_as<float>();
      for (int64_t i = 0; i < N * K; ++i) w[i] = float((i * 7919 + int64_t(c)) % 1000) * 1e-3f;
    }
  }
  Buffer x(xdt, {T, K}), y(DType::kF32, {T, N});
  for (int64_t i = 0; i < T * K; ++i) store_from_f32(x.data(), xdt, size_t(i), float(i % 17) * 0.01f);
  std::vector<double> times;
  for (int r = 0; r < reps + 2; ++r) {
    const Buffer& w = ws[size_t(r) % copies];
    const auto t0 = Clock::now();
    ops::linear(x.tensor(), w.tensor(), nullptr, y.tensor());
    const double s = seconds_since(t0);
    if (r >= 2) times.push_back(s);
  }
  return median(times);
}

nlohmann::json bench_linear(double read_gbs) {
  const LinearCase cases[] = {{"olmoe_attn_qkvo_2048x2048", 2048, 2048},
                              {"olmoe_expert_down_2048x1024", 2048, 1024},
                              {"olmoe_expert_gate_or_up_1024x2048", 1024, 2048},
                              {"olmoe_lm_head_50304x2048", 50304, 2048}};
  nlohmann::json decode = nlohmann::json::array(), prefill = nlohmann::json::array();
  std::vector<cpu::Isa> isas;
  for (cpu::Isa i : {cpu::Isa::kAvx512, cpu::Isa::kAvx2})
    if (cpu::isa_supported(i)) isas.push_back(i);
  if (g_decode_only) isas.resize(1);
  // x dtype / w dtype: bf16 activations, or fp32 activations against bf16 weights (the
  // CPU --dtype bfloat16 configuration).
  const std::pair<DType, DType> decode_dts[] = {{DType::kF32, DType::kBF16}, {DType::kBF16, DType::kBF16}};
  auto dt_name = [](DType x, DType w) {
    return x == w ? std::string(dtype_name(w)) : fmt::format("x:{}/w:{}", dtype_name(x), dtype_name(w));
  };
  for (cpu::Isa isa : isas) {
    cpu::set_isa(isa);
    for (auto [xdt, wdt] : decode_dts)
      for (const LinearCase& c : cases)
        for (int64_t T : {1, 8}) {
          const bool big = c.N * c.K > 16'000'000;
          const double s = time_linear(T, c.N, c.K, xdt, wdt, g_quick ? 5 : (big ? 15 : 61));
          const double bytes = double(c.N * c.K * 2 + T * c.K * dtype_size(xdt) + T * c.N * 4);
          decode.push_back({{"isa", cpu::isa_name(isa)}, {"shape", c.name}, {"dtype", dt_name(xdt, wdt)},
                            {"T", T}, {"N", c.N}, {"K", c.K}, {"median_us", s * 1e6},
                            {"gbs", bytes / s / 1e9}, {"fraction_of_read_bw", bytes / s / 1e9 / read_gbs},
                            {"gflops", 2.0 * double(T * c.N * c.K) / s / 1e9}});
          fmt::print(stderr, "linear {} {} {} T={}: {:.1f} us ({:.2f} of read bw)\n", cpu::isa_name(isa),
                     dt_name(xdt, wdt), c.name, T, s * 1e6, bytes / s / 1e9 / read_gbs);
        }
    if (g_decode_only) continue;
    const std::pair<DType, DType> prefill_dts[] = {
        {DType::kBF16, DType::kBF16}, {DType::kF32, DType::kBF16}, {DType::kF32, DType::kF32}};
    for (auto [xdt, wdt] : prefill_dts)
      for (const LinearCase& c : {cases[0], cases[2]}) {
        const int64_t T = 512;
        const double s = time_linear(T, c.N, c.K, xdt, wdt, g_quick ? 3 : 9);
        prefill.push_back({{"isa", cpu::isa_name(isa)}, {"shape", c.name}, {"dtype", dt_name(xdt, wdt)},
                           {"T", T}, {"N", c.N}, {"K", c.K}, {"median_ms", s * 1e3},
                           {"gflops", 2.0 * double(T * c.N * c.K) / s / 1e9}});
        fmt::print(stderr, "prefill {} {} {}: {:.2f} ms\n", cpu::isa_name(isa), dt_name(xdt, wdt), c.name, s * 1e3);
      }
  }
  cpu::reset_isa();
  return {{"decode", decode}, {"prefill", prefill}};
}

// One decode step (batch 1, one layer) at context ctx, KV in 16-token pages at shuffled
// places in the pool, cycling through pools that together exceed the last-level cache.
nlohmann::json bench_attention_case(const char* name, int64_t Hq, int64_t Hkv, int64_t D, int64_t ctx) {
  const DType dt = DType::kBF16;
  const int64_t page = 16, pages = (ctx + page - 1) / page, slots = pages * page;
  const size_t pool_bytes = size_t(slots * Hkv * D) * 2 * 2;
  const size_t copies = std::max<size_t>(2, ((size_t(g_quick ? 128 : 512) << 20) + pool_bytes - 1) / pool_bytes);
  std::vector<Buffer> ks, vs;
  for (size_t c = 0; c < copies; ++c) {
    ks.emplace_back(dt, Shape{slots, Hkv, D});
    vs.emplace_back(dt, Shape{slots, Hkv, D});
    uint16_t* k = ks.back().tensor().data_as<uint16_t>();
    uint16_t* v = vs.back().tensor().data_as<uint16_t>();
    for (int64_t i = 0; i < slots * Hkv * D; ++i) {
      k[i] = f32_to_bf16(float((i * 37) % 101) * 0.01f - 0.5f);
      v[i] = f32_to_bf16(float((i * 53) % 97) * 0.01f - 0.5f);
    }
  }
  std::vector<int32_t> perm(static_cast<size_t>(pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(3));
  std::vector<int32_t> r2t(static_cast<size_t>(ctx));
  for (int64_t j = 0; j < ctx; ++j) r2t[size_t(j)] = int32_t(perm[size_t(j / page)] * page + j % page);
  Buffer q(dt, {1, Hq, D}), out(dt, {1, Hq, D});
  for (int64_t i = 0; i < Hq * D; ++i) store_from_f32(q.data(), dt, size_t(i), float(i % 13) * 0.05f);
  int32_t req = 0, seq = int32_t(ctx), ext = 1, off = 0;
  ops::AttentionBatch b{1, &req, &seq, &ext, &off, r2t.data(), ctx};
  std::vector<double> times;
  const int reps = g_quick ? 5 : 41;
  for (int r = 0; r < reps + 2; ++r) {
    const auto t0 = Clock::now();
    ops::paged_attention(q.tensor(), ks[size_t(r) % copies].tensor(), vs[size_t(r) % copies].tensor(),
                         b, 1.f / std::sqrt(float(D)), out.tensor());
    const double s = seconds_since(t0);
    if (r >= 2) times.push_back(s);
  }
  const double s = median(times);
  const double kv_bytes = double(ctx * Hkv * D * 2 * 2);
  fmt::print(stderr, "attention {} ctx={}: {:.1f} us\n", name, ctx, s * 1e6);
  return {{"shape", name}, {"dtype", "bf16"}, {"Hq", Hq}, {"Hkv", Hkv}, {"D", D}, {"context", ctx},
          {"batch", 1}, {"median_us", s * 1e6}, {"kv_gbs", kv_bytes / s / 1e9}};
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") g_quick = true;
    if (arg == "--decode-only") g_decode_only = true;
    if (arg.rfind("--only=", 0) == 0) only = arg.substr(7);
  }
  auto want = [&](const char* part) { return only.empty() || only == part; };
  nlohmann::json j;
  j["benchmark"] = "cpu_kernels";
  j["git_commit"] = git_commit();
  j["machine"] = {{"cpu_model", cpu_model()},
                  {"hardware_threads", std::thread::hardware_concurrency()},
                  {"pool_threads", ThreadPool::global().size()},
                  {"isa_detected", cpu::isa_name(cpu::detected_isa())}};
  {
    std::ifstream f("/proc/loadavg");
    std::string load;
    std::getline(f, load);
    j["machine"]["loadavg_at_start"] = load;
  }
  double read_gbs = 0;
  if (want("bandwidth") || want("linear")) {
    j["bandwidth"] = measure_bandwidth();
    read_gbs = j["bandwidth"]["read_gbs_median"].get<double>();
    fmt::print(stderr, "read bandwidth {:.1f} GB/s\n", read_gbs);
  }
  if (want("linear")) j["linear"] = bench_linear(read_gbs);
  if (want("attention")) {
    nlohmann::json att = nlohmann::json::array();
    for (int64_t ctx : {1024, 4096}) {
      att.push_back(bench_attention_case("olmoe_16q_16kv_d128", 16, 16, 128, ctx));
      att.push_back(bench_attention_case("gqa_32q_8kv_d128", 32, 8, 128, ctx));
    }
    j["attention_decode"] = att;
  }
  fmt::print("{}\n", j.dump(2));
  return 0;
}
