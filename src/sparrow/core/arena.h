// Workspace arena for per-step scratch memory. One block is allocated up front; each
// forward step takes slices with alloc() and gives them all back with reset(), so the
// decode loop performs no heap allocation. Overflowing the block is an error that names
// the high-water mark, so the caller can size it (it never silently grows mid-step).
#pragma once

#include <cstddef>

#include "sparrow/core/tensor.h"

namespace sparrow {

class Arena {
 public:
  explicit Arena(size_t capacity_bytes = 0) : block_(capacity_bytes) {}

  // Uninitialized, 64-byte-aligned memory valid until reset().
  void* alloc_bytes(size_t nbytes);
  Tensor alloc(DType dtype, Shape shape) { return Tensor(alloc_bytes(size_t(shape.numel()) * dtype_size(dtype)), dtype, shape); }
  template <typename T> T* alloc_array(size_t n) { return static_cast<T*>(alloc_bytes(n * sizeof(T))); }

  void reset() { used_ = 0; }
  // Gives back everything allocated since used() returned `mark` (scoped scratch).
  void rewind(size_t mark) { used_ = mark; }
  size_t used() const { return used_; }
  size_t capacity() const { return block_.nbytes(); }
  size_t high_water() const { return high_water_; }

 private:
  Buffer block_;
  size_t used_ = 0;
  size_t high_water_ = 0;
};

}  // namespace sparrow
