// WeightStore: hands layers their weights (or this rank's shard of them) in the model's
// compute dtype. A stored tensor that already has that dtype is returned as a zero-copy view
// of the source (for a checkpoint, the mmap) — a row shard is a contiguous view, a column
// shard a strided one — so loading a bf16 model as bf16 needs no second copy; otherwise the
// shard is converted once into a contiguous buffer owned here. Norm gains and biases are
// always fp32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sparrow/model/weight_source.h"

namespace sparrow {

// A half-open index range; `all` covers a whole dimension.
struct Range {
  int64_t begin = 0, end = -1;
  int64_t size() const { return end - begin; }
  static Range all() { return {0, -1}; }
};

// Part `index` of `parts` equal parts of [0, n) (n divisible by parts, checked).
Range shard_range(int64_t n, int parts, int index);
// Part `index` of `parts` parts of [0, n) of size ceil(n / parts) (the last may be short or
// empty): vocabulary sharding.
Range padded_shard_range(int64_t n, int parts, int index);

class WeightStore {
 public:
  WeightStore(const WeightSource& source, DType compute_dtype);

  // Rows `rows` and columns `cols` of a matrix (or embedding table) of full shape `shape`,
  // in the compute dtype.
  Tensor matrix(const std::string& name, Shape shape, Range rows = Range::all(), Range cols = Range::all());
  // A vector (norm gain, bias), or a slice of it, in fp32.
  Tensor vector_f32(const std::string& name, int64_t size, Range part = Range::all());
  bool has(const std::string& name) const { return source_.has(name); }
  DType compute_dtype() const { return dtype_; }
  size_t owned_bytes() const;

 private:
  Tensor slice(const std::string& name, Shape shape, Range rows, Range cols, DType dtype);

  const WeightSource& source_;
  DType dtype_;
  std::vector<Buffer> owned_;
};

}  // namespace sparrow
