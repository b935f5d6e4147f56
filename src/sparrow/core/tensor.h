// Tensor: a non-owning, typed, strided view of memory on one device. Buffer: owning,
// 64-byte-aligned host memory. Views are cheap to copy; whoever made the Buffer keeps it
// alive for as long as views of it are used.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "sparrow/core/dtype.h"
#include "sparrow/core/error.h"

namespace sparrow {

enum class Device : uint8_t { kCPU, kCUDA };

constexpr int kMaxDims = 4;

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[size_t(i)]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;
};

class Tensor {
 public:
  Tensor() = default;
  // Contiguous (row-major) view.
  Tensor(void* data, DType dtype, Shape shape, Device device = Device::kCPU);

  void* data() const { return data_; }
  template <typename T> T* data_as() const { return static_cast<T*>(data_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  int64_t size(int dim) const { return shape_[dim < 0 ? dim + shape_.rank : dim]; }
  int64_t stride(int dim) const { return strides_[size_t(dim < 0 ? dim + shape_.rank : dim)]; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool defined() const { return data_ != nullptr || numel() == 0; }
  bool is_contiguous() const;

  // Rows [begin, end) of dimension 0, as a view.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Columns [begin, end) of a rank-2 tensor, as a strided view (rows keep their stride).
  Tensor slice_cols(int64_t begin, int64_t end) const;
  // Same memory, new contiguous shape with the same element count.
  Tensor view(Shape shape) const;
  // Pointer to row i of dimension 0.
  void* row_ptr(int64_t i) const {
    return static_cast<char*>(data_) + i * strides_[0] * int64_t(dtype_size(dtype_));
  }

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCPU;
  Shape shape_;
  std::array<int64_t, kMaxDims> strides_{};
};

// How a Buffer gives its memory back.
struct BufferFree {
  void (*release)(void*) = nullptr;  // null: std::free
  void operator()(void* p) const;
};

// Owning host allocation, 64-byte aligned, zero-initialized.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t nbytes);
  Buffer(DType dtype, Shape shape);
  // Adopts `p` (zeroed, nbytes long, viewed as dtype/shape), released by `release` (e.g.
  // page-locked memory from cuda::pinned_buffer).
  Buffer(void* p, size_t nbytes, void (*release)(void*), DType dtype, Shape shape);

  void* data() const { return ptr_.get(); }
  size_t nbytes() const { return nbytes_; }
  // View of the whole buffer (valid for Buffer(dtype, shape)).
  const Tensor& tensor() const { return tensor_; }

 private:
  std::unique_ptr<void, BufferFree> ptr_;
  size_t nbytes_ = 0;
  Tensor tensor_;
};

}  // namespace sparrow
