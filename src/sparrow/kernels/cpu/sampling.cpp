// CPU ops::sample_rows: the plain definition (sort, cut, Gumbel-max) that the GPU kernel
// (kernels/cuda/sampling.cu) is tested against. One row at a time, in row order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "sparrow/core/hash.h"
#include "sparrow/kernels/ops.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/kernels/cuda/ops_cuda.h"
#endif

namespace sparrow::ops {
namespace {

int32_t sample_row(const float* logits, int64_t vocab, const RowSampling& p, std::vector<int32_t>& order,
                   std::vector<float>& probs) {
  if (p.temperature == 0.0f) {
    int32_t best = 0;
    argmax_rows(Tensor(const_cast<float*>(logits), DType::kF32, {1, vocab}), &best);
    return best;
  }
  // Candidates sorted by logit (descending, ties to the lower id), then truncated.
  order.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) order[size_t(i)] = int32_t(i);
  int64_t keep = vocab;
  if (p.top_k > 0) keep = std::min<int64_t>(keep, p.top_k);
  const auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (keep < vocab) std::partial_sort(order.begin(), order.begin() + keep, order.end(), better);
  else std::sort(order.begin(), order.end(), better);
  const float inv_t = 1.0f / p.temperature;
  const float mx = logits[order[0]] * inv_t;
  probs.resize(size_t(keep));
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += probs[size_t(i)] = std::exp(logits[order[size_t(i)]] * inv_t - mx);
  // top-p: the smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * max.
  double cum = 0;
  int64_t cut = keep;
  for (int64_t i = 0; i < keep; ++i) {
    const double pr = probs[size_t(i)] / sum;
    if (p.min_p > 0 && pr < double(p.min_p) * (probs[0] / sum)) { cut = i; break; }
    cum += pr;
    if (cum >= double(p.top_p) && p.top_p < 1.0f) { cut = i + 1; break; }
  }
  cut = std::max<int64_t>(cut, 1);
  // Gumbel-max over the kept candidates: argmax(log p + g), g keyed on the token id.
  int32_t best = order[0];
  double best_score = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < cut; ++i) {
    const int32_t tok = order[size_t(i)];
    if (!(probs[size_t(i)] > 0)) continue;
    const double g = -std::log(-std::log(keyed_uniform(p.seed, p.position, tok)));
    const double score = std::log(double(probs[size_t(i)])) + g;
    if (score > best_score) { best_score = score; best = tok; }
  }
  return best;
}

}  // namespace

void sample_rows(const Tensor& logits, const RowSampling* params, int32_t* out) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::sample_rows(logits, params, out);
#endif
  SPARROW_CHECK(logits.device() == Device::kCPU && logits.is_contiguous(), "sample_rows: contiguous CPU logits expected");
  SPARROW_CHECK(logits.dtype() == DType::kF32 && logits.rank() == 2, "sample_rows: f32 [R, V] logits expected");
  thread_local std::vector<int32_t> order;  // scratch reused across calls
  thread_local std::vector<float> probs;
  for (int64_t r = 0; r < logits.size(0); ++r)
    out[r] = sample_row(static_cast<const float*>(logits.row_ptr(r)), logits.size(1), params[r], order, probs);
}

}  // namespace sparrow::ops
