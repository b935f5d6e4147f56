#include "sparrow/model/layers/mlp.h"

#include "sparrow/kernels/ops.h"
#include "sparrow/model/layers/row_parallel.h"

namespace sparrow {

Mlp::Mlp(WeightStore& w, const std::string& prefix, int64_t hidden, int64_t intermediate, const Names& n, Range part)
    : gate_(w.matrix(prefix + "." + n.gate + ".weight", {intermediate, hidden}, part)),
      up_(w.matrix(prefix + "." + n.up + ".weight", {intermediate, hidden}, part)),
      down_(w.matrix(prefix + "." + n.down + ".weight", {hidden, intermediate}, Range::all(), part)) {}

void Mlp::forward(const Tensor& x, Arena& ws, const Tensor& y, int leaves) const {
  const int64_t t = x.size(0), inter = gate_.size(0);
  const Tensor g = ws.alloc(x.dtype(), {t, inter});
  const Tensor u = ws.alloc(x.dtype(), {t, inter});
  ops::linear(x, gate_, nullptr, g);
  ops::linear(x, up_, nullptr, u);
  ops::silu_mul(g, u, g);
  row_parallel_linear(g, down_, leaves, y, &ws);
}

}  // namespace sparrow
