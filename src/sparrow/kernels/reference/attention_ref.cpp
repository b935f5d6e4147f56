#include "sparrow/kernels/reference/attention_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace sparrow::ref {

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const ops::AttentionBatch& batch, float scale, const Tensor& out) {
  const int64_t Hq = q.size(1), D = q.size(2), Hkv = k_cache.size(1);
  const int64_t group = Hq / Hkv;
  const DType dt = q.dtype(), kt = k_cache.dtype(), vt = v_cache.dtype(), ot = out.dtype();
  std::vector<double> scores, acc(static_cast<size_t>(D));
  for (int32_t b = 0; b < batch.batch; ++b) {
    const int64_t seq = batch.seq_lens[b], ext = batch.extend_lens[b];
    const int32_t* r2t = batch.req_to_token + int64_t(batch.req_slots[b]) * batch.max_context;
    for (int64_t i = 0; i < ext; ++i) {
      const int64_t row = batch.q_offsets[b] + i, pos = seq - ext + i;
      for (int64_t h = 0; h < Hq; ++h) {
        const int64_t g = h / group;
        const size_t qo = size_t((row * Hq + h) * D);
        scores.assign(size_t(pos + 1), 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= pos; ++j) {
          const size_t ko = size_t((int64_t(r2t[j]) * Hkv + g) * D);
          double s = 0;
          for (int64_t d = 0; d < D; ++d)
            s += double(load_as_f32(q.data(), dt, qo + size_t(d))) *
                 double(load_as_f32(k_cache.data(), kt, ko + size_t(d)));
          scores[size_t(j)] = s * double(scale);
          mx = std::max(mx, scores[size_t(j)]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j <= pos; ++j) {
          const double p = std::exp(scores[size_t(j)] - mx);
          sum += p;
          const size_t vo = size_t((int64_t(r2t[j]) * Hkv + g) * D);
          for (int64_t d = 0; d < D; ++d)
            acc[size_t(d)] += p * double(load_as_f32(v_cache.data(), vt, vo + size_t(d)));
        }
        for (int64_t d = 0; d < D; ++d)
          store_from_f32(out.data(), ot, qo + size_t(d), float(acc[size_t(d)] / sum));
      }
    }
  }
}

}  // namespace sparrow::ref
