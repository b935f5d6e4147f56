// borrow_weights (weight_source.h): a WeightSource forwarding to another one.
#include "sparrow/model/weight_source.h"

namespace sparrow {
namespace {

class BorrowedWeights final : public WeightSource {
 public:
  explicit BorrowedWeights(const WeightSource& base) : base_(base) {}
  bool has(const std::string& name) const override { return base_.has(name); }
  Tensor get(const std::string& name, const Shape& shape) const override { return base_.get(name, shape); }
  std::vector<std::string> names() const override { return base_.names(); }
  std::vector<std::string> unused_names() const override { return base_.unused_names(); }

 private:
  const WeightSource& base_;
};

}  // namespace

std::unique_ptr<WeightSource> borrow_weights(const WeightSource& base) { return std::make_unique<BorrowedWeights>(base); }

}  // namespace sparrow
