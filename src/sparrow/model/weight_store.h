// WeightStore: hands layers their weights in the model's compute dtype. A stored tensor
// that already has that dtype is returned as a zero-copy view of the source (for a
// checkpoint, the mmap), so loading a bf16 model as bf16 needs no second copy; otherwise it
// is converted once into a buffer owned here. Norm gains and biases are always fp32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sparrow/model/weight_source.h"

namespace sparrow {

class WeightStore {
 public:
  WeightStore(const WeightSource& source, DType compute_dtype);

  // A matrix (or embedding table) in the compute dtype.
  Tensor matrix(const std::string& name, Shape shape);
  // A vector (norm gain, bias) in fp32.
  Tensor vector_f32(const std::string& name, int64_t size);
  bool has(const std::string& name) const { return source_.has(name); }
  DType compute_dtype() const { return dtype_; }
  size_t owned_bytes() const;

 private:
  Tensor converted(const std::string& name, Shape shape, DType dtype);

  const WeightSource& source_;
  DType dtype_;
  std::vector<Buffer> owned_;
};

}  // namespace sparrow
