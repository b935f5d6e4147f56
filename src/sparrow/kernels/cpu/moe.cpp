// ops::moe_experts / ops::moe_combine: the GPU kernels when the tensors are on the device,
// else the plain reference loops (kernels/reference/moe_ref.h). The CPU model does not
// come here: layers/moe.cpp groups pairs per expert and runs the optimized linear kernels,
// which also serves every parallel layout.
#include <algorithm>
#include <vector>

#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/moe_ref.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/kernels/cuda/ops_cuda.h"
#endif

namespace sparrow::ops {

void moe_experts(const Tensor& x, const int32_t* ids, const float* weights, int k, const Tensor& w13,
                 const Tensor& w2, Arena& ws, const Tensor& slot_out, int64_t expert0, int64_t router_experts) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA)
    return cuda::moe_experts(x, ids, weights, k, w13, w2, ws, slot_out, expert0, router_experts);
#endif
  SPARROW_CHECK(x.device() == Device::kCPU && w13.device() == Device::kCPU && w2.device() == Device::kCPU &&
                    slot_out.device() == Device::kCPU,
                "moe_experts: tensors on different devices");
  SPARROW_CHECK(w13.rank() == 3 && w2.rank() == 3 && x.rank() == 2, "moe_experts: x [T, H], w13 [E, 2I, H], w2 [E, H, I]");
  ref::moe_experts(x, ids, weights, k, w13, w2, slot_out, expert0);
}

size_t moe_experts_workspace_bytes(Device device, int64_t T, int k, int64_t E, int64_t H, int64_t I) {
#ifdef SPARROW_HAVE_CUDA
  if (device == Device::kCUDA) return cuda::moe_workspace_bytes(T, k, E, H, I);
#endif
  return 0;
}

void moe_combine(const Tensor& slot_out, int k, const Tensor* shared_out, const Tensor* shared_logit,
                 const Tensor& out) {
#ifdef SPARROW_HAVE_CUDA
  if (out.device() == Device::kCUDA) return cuda::moe_combine(slot_out, k, shared_out, shared_logit, out);
#endif
  SPARROW_CHECK(slot_out.dtype() == DType::kF32 && slot_out.size(0) == out.size(0) * k && slot_out.size(1) == out.size(1),
                "moe_combine: slot_out must be f32 [T*k, H]");
  SPARROW_CHECK(!shared_out == !shared_logit, "moe_combine: shared_out and shared_logit go together");
  ref::moe_combine(slot_out, k, shared_out, shared_logit, out);
}

void fused_moe(const Tensor& x, const Tensor& logits, int k, bool renormalize, const Tensor& w13, const Tensor& w2,
               const Tensor* shared_out, const Tensor* shared_logit, Arena& ws, const Tensor& out, int64_t expert0) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA)
    return cuda::fused_moe(x, logits, k, renormalize, w13, w2, shared_out, shared_logit, ws, out, expert0);
#endif
  const int64_t T = x.size(0);
  std::vector<int32_t> ids(size_t(T * k));
  std::vector<float> weights(size_t(T * k));
  route_topk_softmax(logits, k, renormalize, ids.data(), weights.data());
  Buffer slot_out(DType::kF32, {T * k, x.size(1)});
  moe_experts(x, ids.data(), weights.data(), k, w13, w2, ws, slot_out.tensor(), expert0, logits.size(1));
  moe_combine(slot_out.tensor(), k, shared_out, shared_logit, out);
}

void moe_expert_values(const Tensor& x, const int32_t* ids, int k, const Tensor& w13, const Tensor& w2, int leaves,
                       int64_t expert0, int64_t router_experts, Arena& ws, const Tensor& values) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA)
    return cuda::moe_expert_values(x, ids, k, w13, w2, leaves, expert0, router_experts, ws, values);
#endif
  (void)ids, (void)k, (void)w13, (void)w2, (void)leaves, (void)expert0, (void)router_experts, (void)ws, (void)values;
  throw_input_error("moe_expert_values: a GPU op (the CPU model runs its deterministic experts in layers/moe.cpp)");
}

size_t moe_expert_values_workspace_bytes(int k, int64_t E, int64_t H, int64_t I, int leaves) {
#ifdef SPARROW_HAVE_CUDA
  return cuda::moe_expert_values_workspace_bytes(k, E, H, I, leaves);
#else
  (void)k, (void)E, (void)H, (void)I, (void)leaves;
  return 0;
#endif
}

void moe_combine_weighted(const Tensor& values, const float* weights, int k, const Tensor* shared_out,
                          const Tensor* shared_logit, const Tensor& out) {
#ifdef SPARROW_HAVE_CUDA
  if (out.device() == Device::kCUDA) return cuda::moe_combine_weighted(values, weights, k, shared_out, shared_logit, out);
#endif
  (void)values, (void)weights, (void)k, (void)shared_out, (void)shared_logit;
  throw_input_error("moe_combine_weighted: a GPU op");
}

void tree_sum_blocks(const Tensor& src, int blocks, const Tensor& dst) {
  SPARROW_CHECK(src.dtype() == DType::kF32 && dst.dtype() == DType::kF32 && src.is_contiguous() && dst.is_contiguous() &&
                    blocks >= 1 && src.numel() == int64_t(blocks) * dst.numel(),
                "tree_sum_blocks: src f32 [{} x rows, cols] for dst {}", blocks, dst.shape().str());
#ifdef SPARROW_HAVE_CUDA
  if (dst.device() == Device::kCUDA) return cuda::tree_sum_blocks(src, blocks, dst);
#endif
  const size_t n = size_t(dst.numel());
  std::vector<float> acc(src.data_as<float>(), src.data_as<float>() + src.numel());
  std::vector<float*> b(static_cast<size_t>(blocks));
  for (int i = 0; i < blocks; ++i) b[size_t(i)] = acc.data() + size_t(i) * n;
  for (int w = 1; w < blocks; w *= 2)
    for (int i = 0; i + w < blocks; i += 2 * w)
      for (size_t j = 0; j < n; ++j) b[size_t(i)][j] = b[size_t(i)][j] + b[size_t(i + w)][j];
  std::copy(acc.begin(), acc.begin() + int64_t(n), dst.data_as<float>());
}

}  // namespace sparrow::ops
