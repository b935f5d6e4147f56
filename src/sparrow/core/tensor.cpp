#include "sparrow/core/tensor.h"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace sparrow {

Shape::Shape(std::initializer_list<int64_t> d) {
  SPARROW_CHECK(d.size() <= size_t(kMaxDims), "rank {} > {}", d.size(), kMaxDims);
  for (int64_t v : d) dims[size_t(rank++)] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[size_t(i)];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[size_t(i)] != o.dims[size_t(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += fmt::format("{}{}", i ? ", " : "", dims[size_t(i)]);
  return s + "]";
}

Tensor::Tensor(void* data, DType dtype, Shape shape, Device device)
    : data_(data), dtype_(dtype), device_(device), shape_(shape) {
  int64_t s = 1;
  for (int i = shape_.rank - 1; i >= 0; --i) {
    strides_[size_t(i)] = s;
    s *= shape_[i];
  }
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = shape_.rank - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[size_t(i)] != s) return false;
    s *= shape_[i];
  }
  return true;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  SPARROW_CHECK(rank() >= 1 && begin >= 0 && begin <= end && end <= size(0),
                "slice [{}, {}) of {}", begin, end, shape_.str());
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + begin * strides_[0] * int64_t(dtype_size(dtype_));
  t.shape_.dims[0] = end - begin;
  return t;
}

Tensor Tensor::slice_cols(int64_t begin, int64_t end) const {
  SPARROW_CHECK(rank() == 2 && begin >= 0 && begin <= end && end <= size(1), "column slice [{}, {}) of {}", begin, end,
                shape_.str());
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + begin * strides_[1] * int64_t(dtype_size(dtype_));
  t.shape_.dims[1] = end - begin;
  return t;
}

Tensor Tensor::view(Shape shape) const {
  SPARROW_CHECK(is_contiguous(), "view of a non-contiguous tensor");
  SPARROW_CHECK(shape.numel() == numel(), "view {} of {}", shape.str(), shape_.str());
  return Tensor(data_, dtype_, shape, device_);
}

void BufferFree::operator()(void* p) const { release ? release(p) : std::free(p); }

Buffer::Buffer(size_t nbytes) : nbytes_(nbytes) {
  const size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  if (rounded && !p) throw_error("out of host memory allocating {} bytes", nbytes);
  if (p) std::memset(p, 0, rounded);
  ptr_.reset(p);
}

Buffer::Buffer(DType dtype, Shape shape) : Buffer(size_t(shape.numel()) * dtype_size(dtype)) {
  tensor_ = Tensor(ptr_.get(), dtype, shape);
}

Buffer::Buffer(void* p, size_t nbytes, void (*release)(void*), DType dtype, Shape shape)
    : ptr_(p, BufferFree{release}), nbytes_(nbytes), tensor_(p, dtype, shape) {}

}  // namespace sparrow
