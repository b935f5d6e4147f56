#include "sparrow/kernels/reference/elementwise_ref.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace sparrow::ref {

void embedding(const Tensor& table, const int32_t* ids, const Tensor& out) {
  const int64_t h = table.size(1);
  for (int64_t t = 0; t < out.size(0); ++t)
    for (int64_t i = 0; i < h; ++i)
      store_from_f32(out.row_ptr(t), out.dtype(), size_t(i), load_as_f32(table.row_ptr(ids[t]), table.dtype(), size_t(i)));
}

void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) {
  const int64_t h = x.size(-1);
  for (int64_t t = 0; t < x.size(0); ++t) {
    double ss = 0;
    for (int64_t i = 0; i < h; ++i) {
      const double v = load_as_f32(x.row_ptr(t), x.dtype(), size_t(i));
      ss += v * v;
    }
    const double inv = 1.0 / std::sqrt(ss / double(h) + double(eps));
    for (int64_t i = 0; i < h; ++i) {
      const double v = load_as_f32(x.row_ptr(t), x.dtype(), size_t(i));
      store_from_f32(y.row_ptr(t), y.dtype(), size_t(i), float(v * inv * load_as_f32(w.data(), w.dtype(), size_t(i))));
    }
  }
}

void head_rms_norm(const Tensor& x, const Tensor& w, float eps) {
  const int64_t d = x.size(-1);
  const Tensor rows = x.view({x.numel() / d, d});
  rms_norm(rows, w, eps, rows);
}

void rope(const Tensor& x, const int32_t* positions, const float* inv_freq) {
  const int64_t heads = x.size(1), d = x.size(2), half = d / 2;
  for (int64_t t = 0; t < x.size(0); ++t) {
    for (int64_t hd = 0; hd < heads; ++hd) {
      char* base = static_cast<char*>(x.row_ptr(t)) + hd * d * int64_t(dtype_size(x.dtype()));
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(positions[t]) * inv_freq[i];
        const double c = std::cos(double(angle)), s = std::sin(double(angle));
        const double a = load_as_f32(base, x.dtype(), size_t(i));
        const double b = load_as_f32(base, x.dtype(), size_t(i + half));
        store_from_f32(base, x.dtype(), size_t(i), float(a * c - b * s));
        store_from_f32(base, x.dtype(), size_t(i + half), float(b * c + a * s));
      }
    }
  }
}

void attention_prep(const Tensor& qkv, int64_t heads, int64_t kv_heads, ops::HeadNorm norm, const Tensor* q_norm,
                    const Tensor* k_norm, float eps, const int32_t* positions, const float* inv_freq,
                    const int32_t* cache_loc, const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache) {
  const int64_t d = q_out.size(-1), nq = heads * d, nk = kv_heads * d, n = nq + 2 * nk, half = d / 2;
  std::vector<double> row(static_cast<size_t>(n));
  auto normalize = [&](int64_t begin, int64_t len, const float* w) {
    double ss = 0;
    for (int64_t i = 0; i < len; ++i) ss += row[size_t(begin + i)] * row[size_t(begin + i)];
    const double inv = 1.0 / std::sqrt(ss / double(len) + double(eps));
    for (int64_t i = 0; i < len; ++i) row[size_t(begin + i)] *= inv * double(w[i]);
  };
  for (int64_t t = 0; t < qkv.size(0); ++t) {
    for (int64_t i = 0; i < n; ++i) row[size_t(i)] = load_as_f32(qkv.row_ptr(t), qkv.dtype(), size_t(i));
    if (norm == ops::HeadNorm::kPerHead) {
      for (int64_t h = 0; h < heads + kv_heads; ++h)
        normalize(h * d, d, (h < heads ? q_norm : k_norm)->data_as<float>());
    } else if (norm == ops::HeadNorm::kProjection) {
      normalize(0, nq, q_norm->data_as<float>());
      normalize(nq, nk, k_norm->data_as<float>());
    }
    for (int64_t h = 0; h < heads + kv_heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(positions[t]) * inv_freq[i];
        const double c = std::cos(double(angle)), s = std::sin(double(angle));
        double& a = row[size_t(h * d + i)];
        double& b = row[size_t(h * d + i + half)];
        const double a0 = a, b0 = b;
        a = a0 * c - b0 * s;
        b = b0 * c + a0 * s;
      }
    for (int64_t i = 0; i < nq; ++i) store_from_f32(q_out.data(), q_out.dtype(), size_t(t * nq + i), float(row[size_t(i)]));
    for (int64_t i = 0; i < nk; ++i) {
      store_from_f32(k_cache.row_ptr(cache_loc[t]), k_cache.dtype(), size_t(i), float(row[size_t(nq + i)]));
      store_from_f32(v_cache.row_ptr(cache_loc[t]), v_cache.dtype(), size_t(i), float(row[size_t(nq + nk + i)]));
    }
  }
}

void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& y) {
  const int64_t inter = y.size(1);
  for (int64_t t = 0; t < y.size(0); ++t)
    for (int64_t i = 0; i < inter; ++i) {
      const double g = load_as_f32(gate.row_ptr(t), gate.dtype(), size_t(i));
      const double u = load_as_f32(up.row_ptr(t), up.dtype(), size_t(i));
      store_from_f32(y.row_ptr(t), y.dtype(), size_t(i), float(g / (1.0 + std::exp(-g)) * u));
    }
}

void route_topk_softmax(const Tensor& logits, int k, bool renormalize, int32_t* ids, float* weights) {
  const int64_t e = logits.size(1);
  std::vector<double> p(static_cast<size_t>(e));
  std::vector<int32_t> order(static_cast<size_t>(e));
  for (int64_t t = 0; t < logits.size(0); ++t) {
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < e; ++i) mx = std::max(mx, double(load_as_f32(logits.row_ptr(t), logits.dtype(), size_t(i))));
    for (int64_t i = 0; i < e; ++i) sum += p[size_t(i)] = std::exp(load_as_f32(logits.row_ptr(t), logits.dtype(), size_t(i)) - mx);
    for (int64_t i = 0; i < e; ++i) { p[size_t(i)] /= sum; order[size_t(i)] = int32_t(i); }
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
    double top = 0;
    for (int j = 0; j < k; ++j) top += p[size_t(order[size_t(j)])];
    for (int j = 0; j < k; ++j) {
      ids[t * k + j] = order[size_t(j)];
      weights[t * k + j] = float(renormalize ? p[size_t(order[size_t(j)])] / top : p[size_t(order[size_t(j)])]);
    }
  }
}

void log_softmax(const Tensor& logits, const Tensor& out) {
  const int64_t v = logits.size(1);
  for (int64_t t = 0; t < logits.size(0); ++t) {
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < v; ++i) mx = std::max(mx, double(load_as_f32(logits.row_ptr(t), logits.dtype(), size_t(i))));
    for (int64_t i = 0; i < v; ++i) sum += std::exp(load_as_f32(logits.row_ptr(t), logits.dtype(), size_t(i)) - mx);
    const double lse = mx + std::log(sum);
    for (int64_t i = 0; i < v; ++i)
      static_cast<float*>(out.row_ptr(t))[i] = float(load_as_f32(logits.row_ptr(t), logits.dtype(), size_t(i)) - lse);
  }
}

}  // namespace sparrow::ref
