#include "sparrow/model/weight_store.h"

#include <cstring>

#include "sparrow/kernels/ops.h"

namespace sparrow {

Range shard_range(int64_t n, int parts, int index) {
  SPARROW_CHECK(parts >= 1 && n % parts == 0, "{} does not split into {} parts", n, parts);
  const int64_t per = n / parts;
  return {per * index, per * (index + 1)};
}

Range padded_shard_range(int64_t n, int parts, int index) {
  const int64_t per = (n + parts - 1) / parts;
  const int64_t b = std::min(n, per * index);
  return {b, std::min(n, per * (index + 1))};
}

WeightStore::WeightStore(const WeightSource& source, DType compute_dtype, WeightPlacement placement)
    : source_(source), dtype_(compute_dtype), placement_(placement) {
  SPARROW_CHECK(!placement.dry_run || placement.device_region, "a dry-run weight store needs a region to measure");
}

namespace {

Shape shard_shape(const Shape& shape, Range& rows, Range& cols) {
  if (rows.end < 0) rows = {0, shape[0]};
  if (shape.rank == 2 && cols.end < 0) cols = {0, shape[1]};
  return shape.rank == 2 ? Shape{rows.size(), cols.size()} : Shape{rows.size()};
}

}  // namespace

Tensor WeightStore::alloc(DType dtype, Shape shape) {
  if (!placement_.device_region) return owned_.emplace_back(dtype, shape).tensor();
  return placement_.device_region->alloc(dtype, shape);
}

Tensor WeightStore::place(const Tensor& host) {
  if (!placement_.device_region) return host;
  const Tensor dst = placement_.device_region->alloc(host.dtype(), host.shape());
  if (placement_.dry_run) return dst;
  if (host.is_contiguous()) {
    ops::copy(dst, host);
  } else {  // a column shard: make its rows contiguous first
    Buffer tmp(host.dtype(), host.shape());
    const size_t row = size_t(host.size(1)) * dtype_size(host.dtype());
    for (int64_t r = 0; r < host.size(0); ++r) std::memcpy(tmp.tensor().row_ptr(r), host.row_ptr(r), row);
    ops::copy(dst, tmp.tensor());
  }
  return dst;
}

Tensor WeightStore::constant_f32(const std::vector<float>& values) {
  Buffer& b = owned_.emplace_back(DType::kF32, Shape{int64_t(values.size())});
  std::memcpy(b.data(), values.data(), values.size() * sizeof(float));
  return place(b.tensor());
}

void WeightStore::matrix_into(const std::string& name, Shape shape, Range rows, Range cols, const Tensor& dst) {
  Range r = rows, c = cols;
  const Shape out = shard_shape(shape, r, c);
  SPARROW_CHECK(dst.shape() == out && dst.is_contiguous() && dst.device() == device(), "{}: destination {} for a {} shard",
                name, dst.shape().str(), out.str());
  if (placement_.dry_run) return;
  Tensor t = source_.get(name, shape).slice_rows(r.begin, r.end);
  if (shape.rank == 2 && (c.begin != 0 || c.end != shape[1])) t = t.slice_cols(c.begin, c.end);
  Buffer host(dst.dtype(), out);
  const int64_t row_len = shape.rank == 2 ? c.size() : r.size(), n_rows = shape.rank == 2 ? r.size() : 1;
  for (int64_t i = 0; i < n_rows; ++i)
    convert(shape.rank == 2 ? t.row_ptr(i) : t.data(), t.dtype(),
            static_cast<char*>(host.data()) + size_t(i * row_len) * dtype_size(dst.dtype()), dst.dtype(), size_t(row_len));
  if (dst.device() == Device::kCPU) std::memcpy(dst.data(), host.data(), host.nbytes());
  else ops::copy(dst, host.tensor());
}

Tensor WeightStore::slice(const std::string& name, Shape shape, Range rows, Range cols, DType dtype) {
  if (placement_.dry_run) {
    const Shape out = shard_shape(shape, rows, cols);
    return placement_.device_region->alloc(dtype, out);
  }
  Tensor t = source_.get(name, shape);
  shard_shape(shape, rows, cols);
  t = t.slice_rows(rows.begin, rows.end);
  if (shape.rank == 2 && (cols.begin != 0 || cols.end != shape[1])) t = t.slice_cols(cols.begin, cols.end);
  if (t.dtype() == dtype) return place(t);
  Shape out = shape.rank == 2 ? Shape{rows.size(), cols.size()} : Shape{rows.size()};
  // On a GPU the converted copy is only staging: it goes once the device holds the shard.
  Buffer b(dtype, out);
  const int64_t row_len = shape.rank == 2 ? cols.size() : rows.size();
  const int64_t n_rows = shape.rank == 2 ? rows.size() : 1;
  for (int64_t r = 0; r < n_rows; ++r)
    convert(shape.rank == 2 ? t.row_ptr(r) : t.data(), t.dtype(),
            static_cast<char*>(b.data()) + size_t(r * row_len) * dtype_size(dtype), dtype, size_t(row_len));
  if (placement_.device_region) return place(b.tensor());
  return owned_.emplace_back(std::move(b)).tensor();
}

Tensor WeightStore::matrix(const std::string& name, Shape shape, Range rows, Range cols) {
  return slice(name, shape, rows, cols, dtype_);
}

Tensor WeightStore::vector_f32(const std::string& name, int64_t size, Range part) {
  return slice(name, Shape{size}, part, Range::all(), DType::kF32);
}

size_t WeightStore::owned_bytes() const {
  size_t n = 0;
  for (const auto& b : owned_) n += b.nbytes();
  return n;
}

}  // namespace sparrow
