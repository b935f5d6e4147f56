#include "sparrow/model/weight_store.h"

namespace sparrow {

WeightStore::WeightStore(const WeightSource& source, DType compute_dtype)
    : source_(source), dtype_(compute_dtype) {}

Tensor WeightStore::converted(const std::string& name, Shape shape, DType dtype) {
  const Tensor stored = source_.get(name, shape);
  if (stored.dtype() == dtype) return stored;
  Buffer& b = owned_.emplace_back(dtype, shape);
  convert(stored.data(), stored.dtype(), b.data(), dtype, size_t(shape.numel()));
  return b.tensor();
}

Tensor WeightStore::matrix(const std::string& name, Shape shape) { return converted(name, shape, dtype_); }

Tensor WeightStore::vector_f32(const std::string& name, int64_t size) {
  return converted(name, Shape{size}, DType::kF32);
}

size_t WeightStore::owned_bytes() const {
  size_t n = 0;
  for (const auto& b : owned_) n += b.nbytes();
  return n;
}

}  // namespace sparrow
