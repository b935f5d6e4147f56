// Integer mixing shared by everything that needs a cheap, well-distributed, stateless hash:
// seeded dummy weights, keyed sampling noise, hash tables.
#pragma once

#include <cstdint>

namespace sparrow {

// The splitmix64 finalizer: a bijection on 64-bit integers with full avalanche.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// The splitmix64 increment (golden ratio), for counter-based streams: mix64(seed + k * kGolden).
constexpr uint64_t kGolden64 = 0x9E3779B97F4A7C15ull;

// Uniform in (0, 1), never 0 or 1, from (seed, position, index): the counter-based noise
// of sampling (one draw per token id). constexpr so that the GPU sampling kernel runs this
// very function (nvcc --expt-relaxed-constexpr).
constexpr double keyed_uniform(uint64_t seed, int64_t position, int64_t index) {
  // Three splitmix64 draws, mix64(x + kGolden64), chained through position and index.
  const uint64_t a = mix64(seed + kGolden64);
  const uint64_t b = mix64((a ^ uint64_t(position)) + kGolden64);
  const uint64_t h = mix64((b ^ uint64_t(index)) + kGolden64);
  return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace sparrow
