// Integer mixing shared by everything that needs a cheap, well-distributed, stateless hash:
// seeded dummy weights, keyed sampling noise, hash tables.
#pragma once

#include <cstdint>

namespace sparrow {

// The splitmix64 finalizer: a bijection on 64-bit integers with full avalanche.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// The splitmix64 increment (golden ratio), for counter-based streams: mix64(seed + k * kGolden).
constexpr uint64_t kGolden64 = 0x9E3779B97F4A7C15ull;

}  // namespace sparrow
