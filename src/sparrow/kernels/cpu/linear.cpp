// ops::linear and ops::linear_leaves: argument validation, then dispatch to the kernel for
// the active ISA, parallel over blocks of output features (each thread owns whole y
// columns, so no reduction crosses threads).
#include <algorithm>
#include <vector>

#include "sparrow/core/thread_pool.h"
#include "sparrow/kernels/cpu/cpu_features.h"
#include "sparrow/kernels/cpu/linear_kernels.h"
#include "sparrow/kernels/ops.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/kernels/cuda/ops_cuda.h"
#endif
#include "sparrow/kernels/reference/linear_ref.h"

namespace sparrow::ops {
namespace {

bool is_float(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }

// A rank >= 2 tensor as a [rows, last] matrix view (rank 2 keeps its row stride).
Tensor as_matrix(const Tensor& t, const char* what) {
  SPARROW_REQUIRE(t.rank() >= 1, "linear: {} must have rank >= 1", what);
  if (t.rank() == 2) {
    SPARROW_REQUIRE(t.size(1) <= 1 || t.stride(1) == 1, "linear: {} rows must be contiguous", what);
    return t;
  }
  SPARROW_REQUIRE(t.is_contiguous(), "linear: {} {} must be contiguous", what, t.shape().str());
  const int64_t last = t.size(-1);
  return t.view(Shape{last ? t.numel() / last : 0, last});
}

// Pair layout (see cpu::LinearArgs): per 32-column chunk, the 16 odd-index values, then
// the 16 even-index values; zero beyond K. (With leaves, each leaf's K block is packed on
// its own, so a leaf's chunks start at its first column as in a separate call.)
void pack_pairs_row(const float* x, int64_t K, float* dst) {
  for (int64_t c = 0; c < K; c += cpu::kPairChunk, dst += cpu::kPairChunk)
    for (int64_t i = 0; i < 16; ++i) {
      dst[i] = c + 2 * i + 1 < K ? x[c + 2 * i + 1] : 0.f;
      dst[16 + i] = c + 2 * i < K ? x[c + 2 * i] : 0.f;
    }
}

// Output features per work unit handed to the thread pool.
constexpr int64_t kNUnit = 16;

// Both ops: `leaves` == 1 is ops::linear.
void linear_cpu(const Tensor& x_in, const Tensor& w, const Tensor* bias, const Tensor& y_in, int leaves) {
  SPARROW_REQUIRE(x_in.device() == Device::kCPU && w.device() == Device::kCPU &&
                      y_in.device() == Device::kCPU && (!bias || bias->device() == Device::kCPU),
                  "linear: CPU tensors expected");
  SPARROW_REQUIRE(w.rank() == 2, "linear: w must be [N, K], got {}", w.shape().str());
  SPARROW_REQUIRE(w.size(1) <= 1 || w.stride(1) == 1, "linear: w rows must be contiguous");
  const bool mixed = x_in.dtype() == DType::kF32 && w.dtype() == DType::kBF16;
  SPARROW_REQUIRE(mixed || (x_in.dtype() == w.dtype() &&
                            (w.dtype() == DType::kBF16 || w.dtype() == DType::kF32)),
                  "linear: x/w must be bf16/bf16, f32/f32 or f32/bf16 (got {} and {})",
                  dtype_name(x_in.dtype()), dtype_name(w.dtype()));
  SPARROW_REQUIRE(is_float(y_in.dtype()), "linear: y must be f32, bf16 or f16, got {}",
                  dtype_name(y_in.dtype()));
  const Tensor x = as_matrix(x_in, "x");
  const Tensor y = as_matrix(y_in, "y");
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  SPARROW_REQUIRE(w.size(1) == K, "linear: x {} and w {} disagree on K", x_in.shape().str(),
                  w.shape().str());
  SPARROW_REQUIRE(y.size(0) == T && y.size(1) == N, "linear: y {} must be [{}, {}]",
                  y_in.shape().str(), T, N);
  if (bias) {
    SPARROW_REQUIRE(bias->numel() == N && bias->is_contiguous(), "linear: bias {} must be [{}]",
                    bias->shape().str(), N);
    SPARROW_REQUIRE(bias->dtype() == DType::kF32 || bias->dtype() == DType::kBF16,
                    "linear: bias must be f32 or bf16, got {}", dtype_name(bias->dtype()));
  }
  SPARROW_REQUIRE(leaves >= 1 && leaves <= cpu::kMaxLeaves && K % leaves == 0,
                  "linear_leaves: K {} must split into 1..{} equal leaves, got {}", K, cpu::kMaxLeaves, leaves);
  SPARROW_REQUIRE(leaves == 1 || !bias, "linear_leaves: no bias (add it after the reduction)");
  if (T == 0 || N == 0) return;
  SPARROW_REQUIRE(x.data() && w.data() && y.data() && (!bias || bias->data()),
                  "linear: null data pointer");

  const cpu::Isa isa = cpu::active_isa();
  if (isa == cpu::Isa::kReference) {
    if (leaves > 1)
      ref::linear_leaves(x, w, leaves, y);
    else
      ref::linear(x, w, bias, y);
    return;
  }
  const int64_t kl = K / leaves;
  cpu::LinearArgs a;
  a.x = x.data();
  a.w = w.data();
  a.y = y.data();
  a.bias = bias ? bias->data() : nullptr;
  a.ldx = T > 1 ? x.stride(0) : K;
  a.ldw = N > 1 ? w.stride(0) : K;
  a.ldy = T > 1 ? y.stride(0) : N;
  a.T = T;
  a.N = N;
  a.K = K;
  a.x_t = x.dtype();
  a.w_t = w.dtype();
  a.bias_t = bias ? bias->dtype() : DType::kF32;
  a.y_t = y.dtype();
  a.pf_end = N;
  a.leaves = leaves;
  a.kl = kl;
  a.x_leaf = kl;
  if (mixed) {
    // fp32 activations against bf16 weights: x is packed once per call into the pair
    // layout the kernels read (T * K floats; small next to w), leaf by leaf.
    const int64_t kpl = (kl + cpu::kPairChunk - 1) / cpu::kPairChunk * cpu::kPairChunk;
    const int64_t kp = kpl * leaves;
    thread_local std::vector<float> packed;
    packed.resize(size_t(T * kp));
    float* const dst = packed.data();  // (a thread_local is not captured: name it here)
    const float* const src = x.data_as<float>();
    const int64_t ldx = a.ldx;
    auto pack_rows = [=](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t l = 0; l < leaves; ++l) pack_pairs_row(src + t * ldx + l * kl, kl, dst + t * kp + l * kpl);
    };
    if (T * K >= (int64_t(1) << 18))
      ThreadPool::global().parallel_for(T, pack_rows, 16);
    else
      pack_rows(0, T);
    a.x = dst;
    a.ldx = kp;
    a.x_leaf = kpl;
  }
  auto* kernel = isa == cpu::Isa::kAvx512 ? &cpu::linear_avx512 : &cpu::linear_avx2;

  const int64_t units = (N + kNUnit - 1) / kNUnit;
  // At least ~256K multiply-adds per chunk so tiny problems stay on one thread.
  const int64_t unit_work = std::max<int64_t>(1, T * K * kNUnit);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 18) / unit_work);
  ThreadPool::global().parallel_for(
      units,
      [&](int64_t u0, int64_t u1) { kernel(a, u0 * kNUnit, std::min(N, u1 * kNUnit)); }, grain);
}

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA) return cuda::linear(x, w, bias, y);
#endif
  linear_cpu(x, w, bias, y, 1);
}

size_t linear_leaves_workspace_bytes(Device device, int64_t N, int leaves) {
#ifdef SPARROW_HAVE_CUDA
  if (device == Device::kCUDA) return cuda::linear_leaves_workspace_bytes(N, leaves);
#endif
  (void)device, (void)N, (void)leaves;
  return 0;
}

void linear_leaves(const Tensor& x, const Tensor& w, int leaves, const Tensor& y, Arena* ws) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA) return cuda::linear_leaves(x, w, leaves, y, ws);
#endif
  (void)ws;
  linear_cpu(x, w, nullptr, y, leaves);
}

}  // namespace sparrow::ops
