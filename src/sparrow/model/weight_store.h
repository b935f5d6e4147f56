// WeightStore: hands layers their weights (or this rank's shard of them) in the model's
// compute dtype, on the model's device. On the host, a stored tensor that already has that
// dtype is returned as a zero-copy view of the source (for a checkpoint, the mmap) — a row
// shard is a contiguous view, a column shard a strided one — so loading a bf16 model as bf16
// needs no second copy; otherwise the shard is converted once into a contiguous buffer owned
// here. On a GPU every weight is copied (converted, contiguous) into the device weights
// region. Norm gains and biases are always fp32.
//
// Sizing the device region: a dry-run store reads nothing and copies nothing; it only
// carves its (fake-address) region, so building a model with it measures exactly the bytes
// the real build will take.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sparrow/core/arena.h"
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

// Where a model's weights go: host (no region) or a device region; dry_run measures only.
struct WeightPlacement {
  Arena* device_region = nullptr;
  bool dry_run = false;
  Device device() const { return device_region ? device_region->device() : Device::kCPU; }
};

class WeightStore {
 public:
  WeightStore(const WeightSource& source, DType compute_dtype, WeightPlacement placement = {});

  // Rows `rows` and columns `cols` of a matrix (or embedding table) of full shape `shape`,
  // in the compute dtype.
  Tensor matrix(const std::string& name, Shape shape, Range rows = Range::all(), Range cols = Range::all());
  // A vector (norm gain, bias), or a slice of it, in fp32.
  Tensor vector_f32(const std::string& name, int64_t size, Range part = Range::all());
  // Writes rows/cols of a stored matrix into `dst` (contiguous, of the shard's shape, on the
  // model's device), converted to dst's dtype: how stacked expert weights are built.
  void matrix_into(const std::string& name, Shape shape, Range rows, Range cols, const Tensor& dst);
  // Uninitialized storage for a tensor the model assembles itself (stacked experts).
  Tensor alloc(DType dtype, Shape shape);
  // Model constants computed on the host (RoPE frequencies), placed like the weights.
  Tensor constant_f32(const std::vector<float>& values);
  bool has(const std::string& name) const { return source_.has(name); }
  Device device() const { return placement_.device(); }
  DType compute_dtype() const { return dtype_; }
  size_t owned_bytes() const;

 private:
  Tensor slice(const std::string& name, Shape shape, Range rows, Range cols, DType dtype);
  // The host tensor (maybe a view) -> where the model keeps it.
  Tensor place(const Tensor& host);

  const WeightSource& source_;
  DType dtype_;
  WeightPlacement placement_;
  std::vector<Buffer> owned_;
};

}  // namespace sparrow
