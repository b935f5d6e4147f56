#include "sparrow/model/layers/mlp.h"

#include "sparrow/kernels/ops.h"

namespace sparrow {

Mlp::Mlp(WeightStore& w, const std::string& prefix, int64_t hidden, int64_t intermediate, const Names& n)
    : gate_(w.matrix(prefix + "." + n.gate + ".weight", {intermediate, hidden})),
      up_(w.matrix(prefix + "." + n.up + ".weight", {intermediate, hidden})),
      down_(w.matrix(prefix + "." + n.down + ".weight", {hidden, intermediate})) {}

void Mlp::forward(const Tensor& x, Arena& ws, const Tensor& y) const {
  const int64_t t = x.size(0), inter = gate_.size(0);
  const Tensor g = ws.alloc(x.dtype(), {t, inter});
  const Tensor u = ws.alloc(x.dtype(), {t, inter});
  ops::linear(x, gate_, nullptr, g);
  ops::linear(x, up_, nullptr, u);
  ops::silu_mul(g, u, g);
  ops::linear(g, down_, nullptr, y);
}

}  // namespace sparrow
