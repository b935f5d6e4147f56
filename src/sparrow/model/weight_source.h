// Where a model's weights come from. A model asks for each tensor by its Hugging Face name
// and expected shape; the source returns a host tensor view that stays valid for the
// source's lifetime. Two sources: a safetensors checkpoint (memory-mapped, header
// validated) and dummy weights (seeded random values, no files: --load-format dummy).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sparrow/core/tensor.h"

namespace sparrow {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& name) const = 0;
  // A view of tensor `name` with exactly `shape`. Throws InputError naming the file and the
  // tensor when it is missing or its shape differs. The dtype is the stored one.
  virtual Tensor get(const std::string& name, const Shape& shape) const = 0;
};

// Opens DIR/model.safetensors, or every shard listed in DIR/model.safetensors.index.json.
std::unique_ptr<WeightSource> open_safetensors_checkpoint(const std::string& dir);

// Seeded random weights, generated on request in `dtype`. Names ending in "norm.weight"
// (RMSNorm gains) are 1 + small noise; biases small; everything else ~ U(-a, a) scaled by
// 1/sqrt(fan_in), so activations stay in range through a deep model.
std::unique_ptr<WeightSource> make_dummy_weights(uint64_t seed, DType dtype);

}  // namespace sparrow
