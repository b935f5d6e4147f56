#include "sparrow/kernels/reference/sampling_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "sparrow/core/hash.h"

namespace sparrow::ref {

int32_t sample_row(const float* logits, int64_t vocab, const RowSampling& p) {
  if (p.forced >= 0) return p.forced;  // a teacher-forced row: no draw
  // Every token, by logit descending, ties to the lower id.
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  if (p.temperature == 0.0f) return order[0];
  const int64_t keep = p.top_k > 0 ? std::min<int64_t>(vocab, p.top_k) : vocab;
  const float inv_t = 1.0f / p.temperature;
  const float mx = logits[order[0]] * inv_t;
  const auto prob = [&](int32_t t) { return std::exp(logits[t] * inv_t - mx); };
  std::vector<int32_t> ids(order.begin(), order.begin() + keep);
  std::sort(ids.begin(), ids.end());
  double sum = 0;  // in id order
  for (int32_t t : ids) sum += prob(t);
  int64_t cut = keep;
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    const double pr = prob(order[size_t(i)]) / sum;
    if (p.min_p > 0 && pr < double(p.min_p) * (prob(order[0]) / sum)) { cut = i; break; }
    cum += pr;
    if (cum >= double(p.top_p) && p.top_p < 1.0f) { cut = i + 1; break; }
  }
  cut = std::max<int64_t>(cut, 1);
  int32_t best = order[0];
  double best_score = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < cut; ++i) {
    const int32_t tok = order[size_t(i)];
    const float pr = prob(tok);
    if (!(pr > 0)) continue;
    const double score = std::log(double(pr)) - std::log(-std::log(keyed_uniform(p.seed, p.position, tok)));
    if (score > best_score || (score == best_score && tok < best)) best_score = score, best = tok;
  }
  return best;
}

}  // namespace sparrow::ref
