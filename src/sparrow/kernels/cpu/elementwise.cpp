// CPU implementations of the elementwise ops in ops.h. Each parallelizes over rows (one
// row is always computed by one thread, so results do not depend on the thread count) and
// computes in fp32, rounding once on store. Reductions within a row (RMSNorm, softmax) use
// sequential fp32 accumulation over a fixed number of lanes: the order depends on the row
// length alone.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "sparrow/core/thread_pool.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/elementwise_ref.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/kernels/cuda/ops_cuda.h"
#endif

namespace sparrow::ops {
namespace {

constexpr int kLanes = 16;

void check_cpu(const Tensor& t, const char* what) {
  SPARROW_CHECK(t.device() == Device::kCPU, "{}: CPU tensor expected", what);
  SPARROW_CHECK(t.is_contiguous(), "{}: contiguous tensor expected", what);
}

// Sum of squares in fp32 with kLanes independent partial sums combined pairwise.
float sum_squares(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] * x[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += x[i] * x[i];
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// Row scratch for one thread: rows are at most a vocabulary wide.
thread_local std::vector<float> t_row_a, t_row_b;
float* scratch(std::vector<float>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v.data();
}

void norm_rows(const Tensor& x, const float* w_f32, const Tensor& w, float eps, const Tensor& y) {
  const int64_t rows = x.size(0), h = x.size(-1);
  ThreadPool::global().parallel_for(rows, [&](int64_t b, int64_t e) {
    float* row = scratch(t_row_a, h);
    float* wf = scratch(t_row_b, h);
    if (!w_f32) convert(w.data(), w.dtype(), wf, DType::kF32, size_t(h));
    const float* wp = w_f32 ? w_f32 : wf;
    for (int64_t t = b; t < e; ++t) {
      convert(x.row_ptr(t), x.dtype(), row, DType::kF32, size_t(h));
      const float inv = 1.0f / std::sqrt(sum_squares(row, h) / float(h) + eps);
      for (int64_t i = 0; i < h; ++i) row[i] = row[i] * inv * wp[i];
      convert(row, DType::kF32, y.row_ptr(t), y.dtype(), size_t(h));
    }
  }, 4);
}

}  // namespace

void embedding(const Tensor& table, const int32_t* ids, const Tensor& out) {
#ifdef SPARROW_HAVE_CUDA
  if (table.device() == Device::kCUDA) return cuda::embedding(table, ids, out);
#endif
  check_cpu(table, "embedding table");
  check_cpu(out, "embedding out");
  const int64_t h = table.size(1), v = table.size(0);
  SPARROW_CHECK(out.size(1) == h, "embedding width {} vs {}", out.size(1), h);
  for (int64_t t = 0; t < out.size(0); ++t)
    SPARROW_CHECK(ids[t] >= 0 && ids[t] < v, "token id {} outside vocabulary [0, {})", ids[t], v);
  ThreadPool::global().parallel_for(out.size(0), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) convert(table.row_ptr(ids[t]), table.dtype(), out.row_ptr(t), out.dtype(), size_t(h));
  }, 8);
}

void copy(const Tensor& dst, const Tensor& src) {
  SPARROW_CHECK(dst.dtype() == src.dtype() && dst.numel() == src.numel() && dst.is_contiguous() && src.is_contiguous(),
                "copy: {} {} -> {} {} (same dtype and size, contiguous)", dtype_name(src.dtype()), src.shape().str(),
                dtype_name(dst.dtype()), dst.shape().str());
#ifdef SPARROW_HAVE_CUDA
  if (dst.device() == Device::kCUDA || src.device() == Device::kCUDA) {
    if (dst.device() == src.device()) ::sparrow::cuda::copy_async(dst, src);
    else ::sparrow::cuda::copy(dst, src);
    return;
  }
#endif
  SPARROW_CHECK(dst.device() == Device::kCPU && src.device() == Device::kCPU, "copy: built without CUDA");
  if (src.nbytes()) std::memcpy(dst.data(), src.data(), src.nbytes());
}

void scatter_rows(const Tensor& src, const int32_t* rows, const Tensor& dst) {
#ifdef SPARROW_HAVE_CUDA
  if (src.device() == Device::kCUDA) return cuda::scatter_rows(src, rows, dst);
#endif
  SPARROW_CHECK(src.device() == Device::kCPU && dst.device() == Device::kCPU, "scatter_rows: CPU tensors expected");
  const int64_t t = src.size(0), w = t ? src.numel() / t : 0, slots = dst.size(0);
  if (t == 0) return;  // a rank with no tokens (DP idle batch)
  SPARROW_CHECK(slots > 0 && dst.numel() / slots == w, "scatter_rows: row widths differ ({} vs {})", src.shape().str(),
                dst.shape().str());
  for (int64_t i = 0; i < t; ++i) {
    SPARROW_CHECK(rows[i] >= 0 && rows[i] < slots, "scatter_rows: row {} outside [0, {})", rows[i], slots);
    convert(src.row_ptr(i), src.dtype(), dst.row_ptr(rows[i]), dst.dtype(), size_t(w));
  }
}

void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA) return cuda::rms_norm(x, w, eps, y);
#endif
  check_cpu(x, "rms_norm x");
  check_cpu(y, "rms_norm y");
  SPARROW_CHECK(w.numel() == x.size(-1) && y.numel() == x.numel(), "rms_norm shapes");
  const int64_t h = x.size(-1);
  const Tensor xr = x.view({x.numel() / h, h}), yr = y.view({y.numel() / h, h});
  norm_rows(xr, w.dtype() == DType::kF32 ? w.data_as<float>() : nullptr, w, eps, yr);
}

void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& w, float eps, const Tensor& y) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA) return cuda::add_rms_norm(x, residual, w, eps, y);
#endif
  check_cpu(x, "add_rms_norm x");
  check_cpu(residual, "add_rms_norm residual");
  SPARROW_CHECK(x.numel() == residual.numel() && y.numel() == x.numel(), "add_rms_norm shapes");
  const int64_t rows = x.size(0), h = x.size(-1);
  ThreadPool::global().parallel_for(rows, [&](int64_t b, int64_t e) {
    float* a = scratch(t_row_a, h);
    float* r = scratch(t_row_b, h);
    for (int64_t t = b; t < e; ++t) {
      convert(x.row_ptr(t), x.dtype(), a, DType::kF32, size_t(h));
      convert(residual.row_ptr(t), residual.dtype(), r, DType::kF32, size_t(h));
      for (int64_t i = 0; i < h; ++i) r[i] += a[i];
      convert(r, DType::kF32, residual.row_ptr(t), residual.dtype(), size_t(h));
    }
  }, 4);
  rms_norm(residual, w, eps, y);
}

void head_rms_norm(const Tensor& x, const Tensor& w, float eps) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA) return cuda::head_rms_norm(x, w, eps);
#endif
  const int64_t d = x.size(-1);
  SPARROW_CHECK(w.numel() == d, "head_rms_norm weight {} vs head dim {}", w.numel(), d);
  rms_norm(x.view({x.numel() / d, d}), w, eps, x.view({x.numel() / d, d}));
}

void rope(const Tensor& x, const int32_t* positions, const float* inv_freq) {
#ifdef SPARROW_HAVE_CUDA
  if (x.device() == Device::kCUDA) return cuda::rope(x, positions, inv_freq);
#endif
  check_cpu(x, "rope x");
  const int64_t tokens = x.size(0), heads = x.size(1), d = x.size(2), half = d / 2;
  const size_t es = dtype_size(x.dtype());
  ThreadPool::global().parallel_for(tokens, [&](int64_t b, int64_t e) {
    float* cs = scratch(t_row_a, d);  // cos in [0, half), sin in [half, d)
    float* row = scratch(t_row_b, d);
    for (int64_t t = b; t < e; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        // The angle is an fp32 product, as HF computes it; cos/sin of it are then exact-rounded.
        const float angle = float(positions[t]) * inv_freq[i];
        cs[i] = float(std::cos(double(angle)));
        cs[half + i] = float(std::sin(double(angle)));
      }
      for (int64_t hd = 0; hd < heads; ++hd) {
        void* p = static_cast<char*>(x.row_ptr(t)) + size_t(hd * d) * es;
        convert(p, x.dtype(), row, DType::kF32, size_t(d));
        for (int64_t i = 0; i < half; ++i) {
          const float a = row[i], c = row[i + half];
          row[i] = a * cs[i] - c * cs[half + i];
          row[i + half] = c * cs[i] + a * cs[half + i];
        }
        convert(row, DType::kF32, p, x.dtype(), size_t(d));
      }
    }
  }, 4);
}

void attention_prep(const Tensor& qkv, int64_t heads, int64_t kv_heads, HeadNorm norm, const Tensor* q_norm,
                    const Tensor* k_norm, float eps, const int32_t* positions, const float* inv_freq,
                    const int32_t* cache_loc, const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache) {
#ifdef SPARROW_HAVE_CUDA
  if (qkv.device() == Device::kCUDA)
    return cuda::attention_prep(qkv, heads, kv_heads, norm, q_norm, k_norm, eps, positions, inv_freq, cache_loc, q_out,
                                k_cache, v_cache);
#endif
  // The CPU model runs the separate ops; this is the plain reference the GPU kernel is held to.
  check_cpu(qkv, "attention_prep qkv");
  check_cpu(q_out, "attention_prep q_out");
  for (int64_t t = 0; t < qkv.size(0); ++t)
    SPARROW_CHECK(cache_loc[t] >= 0 && cache_loc[t] < k_cache.size(0), "attention_prep: slot {} outside [0, {})", cache_loc[t],
                  k_cache.size(0));
  ref::attention_prep(qkv, heads, kv_heads, norm, q_norm, k_norm, eps, positions, inv_freq, cache_loc, q_out, k_cache,
                      v_cache);
}

void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& y) {
#ifdef SPARROW_HAVE_CUDA
  if (gate.device() == Device::kCUDA) return cuda::silu_mul(gate, up, y);
#endif
  check_cpu(gate, "silu_mul gate");
  check_cpu(up, "silu_mul up");
  check_cpu(y, "silu_mul out");
  const int64_t inter = y.size(1);
  SPARROW_CHECK(gate.numel() == y.numel() && up.numel() == y.numel(), "silu_mul shapes");
  ThreadPool::global().parallel_for(y.size(0), [&](int64_t b, int64_t e) {
    float* g = scratch(t_row_a, inter);
    float* u = scratch(t_row_b, inter);
    for (int64_t t = b; t < e; ++t) {
      convert(gate.row_ptr(t), gate.dtype(), g, DType::kF32, size_t(inter));
      convert(up.row_ptr(t), up.dtype(), u, DType::kF32, size_t(inter));
      for (int64_t i = 0; i < inter; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      convert(g, DType::kF32, y.row_ptr(t), y.dtype(), size_t(inter));
    }
  }, 4);
}

void route_topk_softmax(const Tensor& logits, int k, bool renormalize, int32_t* ids, float* weights) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::route_topk_softmax(logits, k, renormalize, ids, weights);
#endif
  check_cpu(logits, "router logits");
  const int64_t e = logits.size(1);
  SPARROW_CHECK(k >= 1 && k <= e, "top-k {} of {} experts", k, e);
  ThreadPool::global().parallel_for(logits.size(0), [&](int64_t b, int64_t end) {
    float* p = scratch(t_row_a, e);
    for (int64_t t = b; t < end; ++t) {
      convert(logits.row_ptr(t), logits.dtype(), p, DType::kF32, size_t(e));
      float mx = -INFINITY, sum = 0.f;
      for (int64_t i = 0; i < e; ++i) mx = std::max(mx, p[i]);
      for (int64_t i = 0; i < e; ++i) sum += p[i] = std::exp(p[i] - mx);
      for (int64_t i = 0; i < e; ++i) p[i] /= sum;
      // Selection: k passes of arg-max; the strict '>' keeps the lower id on ties.
      int32_t* row_ids = ids + t * k;
      float* row_w = weights + t * k;
      float top = 0.f;
      for (int j = 0; j < k; ++j) {
        int32_t best = -1;
        for (int64_t i = 0; i < e; ++i) {
          bool taken = false;
          for (int q = 0; q < j; ++q) taken |= row_ids[q] == i;
          if (!taken && (best < 0 || p[i] > p[best])) best = int32_t(i);
        }
        row_ids[j] = best;
        row_w[j] = p[best];
        top += p[best];
      }
      if (renormalize)
        for (int j = 0; j < k; ++j) row_w[j] /= top;
    }
  }, 4);
}

void argmax_rows(const Tensor& logits, int32_t* out) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::argmax_rows(logits, out);
#endif
  check_cpu(logits, "argmax_rows");
  SPARROW_CHECK(logits.dtype() == DType::kF32 && logits.rank() == 2, "argmax_rows: f32 [R, V] logits expected");
  const int64_t v = logits.size(1);
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const float* row = static_cast<const float*>(logits.row_ptr(r));
    out[r] = 0;
    if (v == 0 || row[0] != row[0]) continue;  // NaN first: a plain scan never moves off it
    // The plain scan's answer in two vectorizable passes: the maximum over the numbers
    // (NaN never wins a '>'), then its first index.
    float lanes[kLanes];
    for (float& l : lanes) l = row[0];
    int64_t i = 0;
    for (; i + kLanes <= v; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lanes[j] = row[i + j] > lanes[j] ? row[i + j] : lanes[j];
    float m = lanes[0];
    for (int j = 1; j < kLanes; ++j) m = lanes[j] > m ? lanes[j] : m;
    for (; i < v; ++i) m = row[i] > m ? row[i] : m;
    int64_t first = 0;
    while (!(row[first] == m)) ++first;
    out[r] = int32_t(first);
  }
}

void log_softmax(const Tensor& logits, const Tensor& out) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::log_softmax(logits, out);
#endif
  check_cpu(logits, "log_softmax in");
  check_cpu(out, "log_softmax out");
  SPARROW_CHECK(out.dtype() == DType::kF32 && out.numel() == logits.numel(), "log_softmax out must be f32 of the same shape");
  const int64_t v = logits.size(1);
  ThreadPool::global().parallel_for(logits.size(0), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* o = static_cast<float*>(out.row_ptr(t));
      convert(logits.row_ptr(t), logits.dtype(), o, DType::kF32, size_t(v));
      float mx = -INFINITY;
      for (int64_t i = 0; i < v; ++i) mx = std::max(mx, o[i]);
      // exp in fp32 summed in double (as the GPU kernel): one row per token, and logprobs
      // are what users compare. (An fp32 exp is ~1.8x cheaper than a double one here.)
      double sum = 0.0;
      for (int64_t i = 0; i < v; ++i) sum += double(std::exp(o[i] - mx));
      const float lse = mx + float(std::log(sum));
      for (int64_t i = 0; i < v; ++i) o[i] -= lse;
    }
  }, 1);
}

}  // namespace sparrow::ops
