#include "sparrow/model/weight_store.h"

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

WeightStore::WeightStore(const WeightSource& source, DType compute_dtype) : source_(source), dtype_(compute_dtype) {}

Tensor WeightStore::slice(const std::string& name, Shape shape, Range rows, Range cols, DType dtype) {
  Tensor t = source_.get(name, shape);
  if (rows.end < 0) rows = {0, shape[0]};
  if (shape.rank == 2 && cols.end < 0) cols = {0, shape[1]};
  t = t.slice_rows(rows.begin, rows.end);
  if (shape.rank == 2 && (cols.begin != 0 || cols.end != shape[1])) t = t.slice_cols(cols.begin, cols.end);
  if (t.dtype() == dtype) return t;
  Shape out = shape.rank == 2 ? Shape{rows.size(), cols.size()} : Shape{rows.size()};
  Buffer& b = owned_.emplace_back(dtype, out);
  const int64_t row_len = shape.rank == 2 ? cols.size() : rows.size();
  const int64_t n_rows = shape.rank == 2 ? rows.size() : 1;
  for (int64_t r = 0; r < n_rows; ++r)
    convert(shape.rank == 2 ? t.row_ptr(r) : t.data(), t.dtype(),
            static_cast<char*>(b.data()) + size_t(r * row_len) * dtype_size(dtype), dtype, size_t(row_len));
  return b.tensor();
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
