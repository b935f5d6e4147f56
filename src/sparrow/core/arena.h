// Arena: bump allocator for memory that lives as long as a step (the workspace) or as long as
// the model (device weights, the KV pool). Either it owns one host block allocated up front,
// or it carves a region of memory someone else owns (a slice of the one device allocation,
// cuda::DeviceArena). Each forward step takes slices with alloc() and gives them all back
// with reset() / rewind(), so the decode loop performs no allocation. Overflowing the block
// is an error that names the high-water mark, so the caller can size it (it never silently
// grows mid-step). The same class serves CPU and GPU: alloc() tags tensors with the arena's
// device, so code that takes scratch from "its" arena runs unchanged on either.
#pragma once

#include <cstddef>
#include <string>

#include "sparrow/core/tensor.h"

namespace sparrow {

class Arena {
 public:
  // Owns a zeroed host block of `capacity_bytes`.
  explicit Arena(size_t capacity_bytes = 0) : block_(capacity_bytes), base_(static_cast<char*>(block_.data())), capacity_(capacity_bytes) {}
  // Carves [base, base + capacity) of memory on `device` (not owned); `name` appears in the
  // overflow error.
  Arena(std::string name, void* base, size_t capacity, Device device)
      : name_(std::move(name)), base_(static_cast<char*>(base)), capacity_(capacity), device_(device) {}
  Arena(Arena&&) = default;
  Arena& operator=(Arena&&) = default;

  // Uninitialized memory valid until reset(); 64-byte aligned on the host, 256 on a GPU
  // (cuBLASLt and vectorized kernels pick faster paths at that alignment).
  void* alloc_bytes(size_t nbytes);
  Tensor alloc(DType dtype, Shape shape) {
    return Tensor(alloc_bytes(size_t(shape.numel()) * dtype_size(dtype)), dtype, shape, device_);
  }
  template <typename T> T* alloc_array(size_t n) { return static_cast<T*>(alloc_bytes(n * sizeof(T))); }

  void reset() { used_ = 0; }
  // Gives back everything allocated since used() returned `mark` (scoped scratch).
  void rewind(size_t mark) { used_ = mark; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  size_t high_water() const { return high_water_; }
  Device device() const { return device_; }
  void* base() const { return base_; }

 private:
  std::string name_ = "workspace";
  Buffer block_;
  char* base_ = nullptr;
  size_t capacity_ = 0;
  Device device_ = Device::kCPU;
  size_t used_ = 0;
  size_t high_water_ = 0;
};

}  // namespace sparrow
