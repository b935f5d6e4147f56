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
  // Every tensor name the source holds, sorted (dummy weights: those generated so far).
  virtual std::vector<std::string> names() const = 0;
  // Names never passed to get(), sorted: a checkpoint tensor the model did not use usually
  // means a wiring bug or an unsupported feature, so callers warn about these.
  virtual std::vector<std::string> unused_names() const { return {}; }
};

// Opens DIR/model.safetensors, or every shard listed in DIR/model.safetensors.index.json.
std::unique_ptr<WeightSource> open_safetensors_checkpoint(const std::string& dir);

// Seeded random weights, generated on request in `dtype` (a float type; InputError
// otherwise), owned by the source. Names ending in "norm.weight" (RMSNorm gains,
// q_norm / k_norm included) are 1 + U(-0.05, 0.05); names ending in "bias" are
// U(-0.02, 0.02); everything else ~ U(-a, a) with a = 1/sqrt(shape[-1]) (fan-in), so
// activations stay in range through a deep model. Element i of tensor `name` depends only
// on (seed, name, i): identical for any thread count or request order. Thread-safe;
// asking again for a name with a different shape is an InputError.
std::unique_ptr<WeightSource> make_dummy_weights(uint64_t seed, DType dtype);

// A source that reads through to `base` (which must outlive it): several engines in one
// process (the recipes of `sparrow parity`, a benchmark's layouts) then load one copy of the
// weights (a checkpoint mapped once, dummy weights generated once).
std::unique_ptr<WeightSource> borrow_weights(const WeightSource& base);

}  // namespace sparrow
