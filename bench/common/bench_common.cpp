#include "bench_common.h"

#include <cmath>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "sparrow/core/tensor.h"
#include "sparrow/core/thread_pool.h"

namespace sparrow::bench {

double measure_read_bandwidth_gbs(size_t bytes, int passes) {
  const size_t n = bytes / sizeof(uint64_t);
  Buffer buf(n * sizeof(uint64_t));
  uint64_t* p = static_cast<uint64_t*>(buf.data());
  for (size_t i = 0; i < n; i += 512) p[i] = i;  // touch every page
  ThreadPool& pool = ThreadPool::global();
  std::vector<uint64_t> sinks(size_t(pool.size()) * 8);
  std::vector<double> gbs;
  for (int r = 0; r < passes; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(int64_t(n / 8), [&](int64_t b, int64_t e) {
      // Eight independent accumulators keep several loads in flight per thread.
      uint64_t a[8] = {};
      for (int64_t i = b; i < e; ++i)
        for (int l = 0; l < 8; ++l) a[l] ^= p[size_t(i) * 8 + size_t(l)];
      uint64_t s = 0;
      for (uint64_t x : a) s ^= x;
      sinks[size_t(b % int64_t(sinks.size()))] ^= s;
    }, 1 << 14);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gbs.push_back(double(n * sizeof(uint64_t)) / s / 1e9);
  }
  uint64_t keep = 0;
  for (uint64_t s : sinks) keep ^= s;
  if (keep == 0x5eed) std::fprintf(stderr, " ");  // keeps the reads observable
  return median(gbs);
}

double decode_bytes_per_step(const ModelConfig& c, int64_t batch, size_t elem) {
  const double h = double(c.hidden_size);
  const double attn = h * double((c.num_heads + 2 * c.num_kv_heads) * c.head_dim) + double(c.num_heads * c.head_dim) * h;
  double total = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    total += attn;
    if (c.is_moe_layer(l)) {
      const double e = double(c.num_experts), k = double(c.top_k);
      const double touched = e * (1.0 - std::pow(1.0 - k / e, double(batch)));
      total += touched * 3.0 * h * double(c.moe_intermediate_size) + e * h;
      if (c.shared_expert_intermediate_size) total += 3.0 * h * double(c.shared_expert_intermediate_size) + h;
    } else {
      total += 3.0 * h * double(c.intermediate_size);
    }
  }
  total += double(c.vocab_size) * h;  // lm_head
  return total * double(elem);
}

}  // namespace sparrow::bench
