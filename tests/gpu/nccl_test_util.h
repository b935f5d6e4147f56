// Helpers of the NCCL backend's GPU tests: device upload / download, rank threads (one per
// GPU, each with its own stream current), and input values whose sums depend on the order
// of addition (magnitudes 2^-20 .. 2^20), so a wrong reduction tree changes the bits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "sparrow/core/cuda/device.h"
#include "sparrow/parallel/cuda/nccl_world.h"

namespace sparrow::nccl_test {

inline int gpu_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

template <typename T>
cuda::DeviceBuffer upload(const std::vector<T>& v) {
  cuda::DeviceBuffer d(std::max<size_t>(v.size() * sizeof(T), 1));
  cuda::copy_bytes(d.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

template <typename T>
std::vector<T> download(const void* d, size_t n) {
  std::vector<T> v(n);
  cuda::copy_bytes(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

// A device buffer of n elements of T filled with `fill` (to spot what a call did not write).
template <typename T>
cuda::DeviceBuffer filled(size_t n, T fill) {
  return upload(std::vector<T>(n, fill));
}

inline float value(int rank, size_t i) {
  uint32_t h = uint32_t(rank) * 0x9E3779B1u ^ uint32_t(i) * 0x85EBCA77u;
  h ^= h >> 15;
  h *= 0xC2B2AE3Du;
  h ^= h >> 13;
  const float u = float(h & 0xffffu) / 65536.0f - 0.5f;
  return std::ldexp(u, int((h >> 16) % 41) - 20);
}

inline std::vector<float> values(int rank, size_t n, size_t salt = 0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(rank, i + salt * 1000003);
  return v;
}

// Runs body(world rank, communicator) on every rank of this node of `world`, one thread
// per rank with its device and a fresh non-blocking stream current; waits for the stream,
// then rethrows the first exception of any rank.
inline void run_ranks(NcclWorld& world, const std::function<void(int, Communicator&)>& body) {
  const int n = world.local_size();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      const int r = world.first_rank() + i;
      try {
        std::unique_ptr<Communicator> comm = world.communicator(r);  // sets the device
        cuda::Stream stream;
        cuda::StreamGuard guard(stream.get());
        body(r, *comm);
        stream.synchronize();
      } catch (...) {
        errors[size_t(i)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

inline NcclWorldOptions world_options(int size, bool exact = true, size_t scratch = size_t(64) << 20) {
  NcclWorldOptions o;
  o.size = size;
  o.exact_order = exact;
  o.scratch_bytes = scratch;
  return o;
}

}  // namespace sparrow::nccl_test
