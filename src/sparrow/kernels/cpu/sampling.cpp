// CPU ops::sample_rows: the definition (order, cut, Gumbel-max) that the GPU kernel
// (kernels/cuda/sampling.cu) is tested against, one row at a time. It sorts only as much
// of the row as the top-k / top-p / min-p cuts need (a growing partial sort) and skips the
// noise of tokens that cannot win (kSampleHopelessLogProb): the same result as sorting
// everything. CPU ops::row_logprobs: ops::log_softmax of the row and the engine's top_n
// definition (what the scheduler's host path computes, bit for bit). ops::apply_logit_edits:
// the engine's penalties and masks (the host Sampler applies them with it too), and
// sample_edited_rows, the order in which an executor runs these ops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "sparrow/core/hash.h"
#include "sparrow/core/thread_pool.h"
#include "sparrow/kernels/logprobs.h"
#include "sparrow/kernels/ops.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/kernels/cuda/ops_cuda.h"
#endif

namespace sparrow::ops {
namespace {

int32_t sample_row(const float* logits, int64_t vocab, const RowSampling& p, std::vector<int32_t>& order,
                   std::vector<int32_t>& ids) {
  if (p.forced >= 0) {
    SPARROW_CHECK(p.forced < vocab, "sample_rows: forced token {} outside the vocabulary", p.forced);
    return p.forced;
  }
  int32_t top = 0;  // the first maximum: the head of the (logit descending, id ascending) order
  argmax_rows(Tensor(const_cast<float*>(logits), DType::kF32, {1, vocab}), &top);
  if (p.temperature == 0.0f) return top;
  const float inv_t = 1.0f / p.temperature;
  const float mx = logits[top] * inv_t;
  const auto prob = [&](int32_t t) { return std::exp(logits[t] * inv_t - mx); };
  const auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  // Candidates: the top_k in order, or the whole vocabulary. order[0, sorted) is always
  // the head of the order, sorted; the rest is sorted only if the cut walk needs it.
  const int64_t keep = p.top_k > 0 ? std::min<int64_t>(vocab, p.top_k) : vocab;
  order.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) order[size_t(i)] = int32_t(i);
  int64_t sorted = 0;
  if (keep < vocab) {
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), better);
    sorted = keep;
  }
  // The candidates' mass, summed in double in id order.
  double sum = 0;
  if (keep < vocab) {
    ids.assign(order.begin(), order.begin() + keep);
    std::sort(ids.begin(), ids.end());
    for (int32_t t : ids) sum += prob(t);
  } else {
    for (int32_t t = 0; t < int32_t(vocab); ++t) sum += prob(t);
  }
  // top-p: the smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * max.
  int64_t cut = keep;
  if (p.top_p < 1.0f || p.min_p > 0.0f) {
    const double p0 = prob(top);
    for (int64_t need = std::min<int64_t>(keep, 256);; need = std::min(keep, need * 8)) {
      if (sorted < need) {
        std::partial_sort(order.begin(), order.begin() + need, order.end(), better);
        sorted = need;
      }
      double cum = 0;
      bool found = false;
      for (int64_t i = 0; i < sorted && !found; ++i) {
        const double pr = prob(order[size_t(i)]) / sum;
        if (p.min_p > 0 && pr < double(p.min_p) * (p0 / sum)) cut = i, found = true;
        else if ((cum += pr) >= double(p.top_p) && p.top_p < 1.0f) cut = i + 1, found = true;
      }
      if (found || sorted == keep) break;
    }
  }
  cut = std::max<int64_t>(cut, 1);
  // Gumbel-max over the kept candidates: argmax(log p + g), g keyed on the token id, ties
  // to the lower id.
  int32_t best = top;
  double best_score = -std::numeric_limits<double>::infinity();
  const auto consider = [&](int32_t tok) {
    const float x = logits[tok] * inv_t - mx;
    if (!(x >= kSampleHopelessLogProb)) return;
    const float pr = std::exp(x);
    if (!(pr > 0)) return;
    const double g = -std::log(-std::log(keyed_uniform(p.seed, p.position, tok)));
    const double score = std::log(double(pr)) + g;
    if (score > best_score || (score == best_score && tok < best)) best_score = score, best = tok;
  };
  if (cut == vocab) {
    for (int32_t t = 0; t < int32_t(vocab); ++t) consider(t);
  } else {
    for (int64_t i = 0; i < cut; ++i) consider(order[size_t(i)]);
  }
  return best;
}

// The [R, V] f32 CPU logits an edit list addresses, and each edit's element (checked).
struct EditTarget {
  const char* op;
  float* x;
  int64_t rows, vocab;
  EditTarget(const Tensor& logits, const char* op_name) : op(op_name) {
    SPARROW_CHECK(logits.device() == Device::kCPU && logits.is_contiguous(), "{}: contiguous CPU logits expected", op);
    SPARROW_CHECK(logits.dtype() == DType::kF32 && logits.rank() == 2, "{}: f32 [R, V] logits expected", op);
    x = logits.data_as<float>();
    rows = logits.size(0);
    vocab = logits.size(1);
  }
  float& at(const LogitEdit& e) const {
    SPARROW_CHECK(e.row >= 0 && e.row < rows && e.token >= 0 && e.token < vocab, "{}: ({}, {}) outside [{}, {}] logits",
                  op, e.row, e.token, rows, vocab);
    return x[int64_t(e.row) * vocab + e.token];
  }
};

}  // namespace

void apply_logit_edits(const Tensor& logits, const LogitEdit* edits, int64_t n, float* saved) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::apply_logit_edits(logits, edits, n, saved);
#endif
  const EditTarget target(logits, "apply_logit_edits");
  for (int64_t i = 0; i < n; ++i) {
    const LogitEdit& e = edits[i];
    float& l = target.at(e);
    if (saved) saved[i] = l;
    // Separate statements, no -mfma in this file: each step rounds on its own, as the GPU's
    // __fdiv_rn / __fmul_rn / __fsub_rn do.
    if (e.rep != 1.0f) l = l > 0 ? l / e.rep : l * e.rep;
    l -= e.sub;
    if (e.mask) l = -std::numeric_limits<float>::infinity();
  }
}

void restore_logits(const Tensor& logits, const LogitEdit* edits, int64_t n, const float* saved) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::restore_logits(logits, edits, n, saved);
#endif
  const EditTarget target(logits, "restore_logits");
  for (int64_t i = 0; i < n; ++i) target.at(edits[i]) = saved[i];
}

void sample_edited_rows(const Tensor& logits, const LogitEdit* edits, int64_t n, float* saved, const RowSampling* params,
                        int32_t* out, const RowLogprobs* lp_params, RowLogprobsOut* lp_out) {
  SPARROW_CHECK(n == 0 || saved, "sample_edited_rows: {} edits and no scratch for the originals", n);
  if (n > 0) apply_logit_edits(logits, edits, n, saved);
  sample_rows(logits, params, out);
  if (n > 0) restore_logits(logits, edits, n, saved);
  if (lp_params) row_logprobs(logits, out, lp_params, lp_out);
}

void sample_rows(const Tensor& logits, const RowSampling* params, int32_t* out) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::sample_rows(logits, params, out);
#endif
  SPARROW_CHECK(logits.device() == Device::kCPU && logits.is_contiguous(), "sample_rows: contiguous CPU logits expected");
  SPARROW_CHECK(logits.dtype() == DType::kF32 && logits.rank() == 2, "sample_rows: f32 [R, V] logits expected");
  // Rows are independent (a draw depends on its row alone): one row per pool thread at a
  // time. A non-greedy row is a few passes of exp / log over the vocabulary (~7 ms at
  // 151936 tokens), so the rows of a GPU's eager step (a prefill's last tokens) run in
  // parallel, as the scheduler's host path does.
  ThreadPool::global().parallel_for(logits.size(0), [&](int64_t b, int64_t e) {
    thread_local std::vector<int32_t> order, ids;  // scratch reused across calls
    for (int64_t r = b; r < e; ++r)
      out[r] = sample_row(static_cast<const float*>(logits.row_ptr(r)), logits.size(1), params[r], order, ids);
  }, 1);
}

void row_logprobs(const Tensor& logits, const int32_t* chosen, const RowLogprobs* params, RowLogprobsOut* out) {
#ifdef SPARROW_HAVE_CUDA
  if (logits.device() == Device::kCUDA) return cuda::row_logprobs(logits, chosen, params, out);
#endif
  SPARROW_CHECK(logits.device() == Device::kCPU && logits.is_contiguous(), "row_logprobs: contiguous CPU logits expected");
  SPARROW_CHECK(logits.dtype() == DType::kF32 && logits.rank() == 2, "row_logprobs: f32 [R, V] logits expected");
  const int64_t vocab = logits.size(1);
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const RowLogprobs& p = params[r];
    SPARROW_CHECK(p.top_n <= kRowLogprobsMaxTop && p.num_ids >= 0 && p.num_ids <= kRowLogprobsMaxIds,
                  "row_logprobs: top_n {} / {} ids beyond the caps", p.top_n, p.num_ids);
    SPARROW_CHECK(p.top_n < 0 || (chosen[r] >= 0 && chosen[r] < vocab), "row_logprobs: token {} outside the vocabulary",
                  chosen[r]);
    for (int j = 0; p.top_n >= 0 && j < p.num_ids; ++j)
      SPARROW_CHECK(p.ids[j] >= 0 && p.ids[j] < vocab, "row_logprobs: id {} outside the vocabulary", p.ids[j]);
  }
  ThreadPool::global().parallel_for(logits.size(0), [&](int64_t b, int64_t e) {
    thread_local std::vector<float> lp;
    for (int64_t r = b; r < e; ++r) {
      const RowLogprobs& p = params[r];
      if (p.top_n < 0) continue;
      lp.resize(size_t(vocab));
      log_softmax(Tensor(logits.row_ptr(r), DType::kF32, {1, vocab}), Tensor(lp.data(), DType::kF32, {1, vocab}));
      RowLogprobsOut& o = out[r];
      o.logprob = lp[size_t(chosen[r])];
      for (int j = 0; j < p.num_ids; ++j) o.id_logprobs[j] = lp[size_t(p.ids[j])];
      const std::vector<TokenLogprob> top = top_n(lp.data(), vocab, p.top_n);
      for (size_t j = 0; j < top.size(); ++j) {
        o.top_ids[j] = top[j].token_id;
        o.top_logprobs[j] = top[j].logprob;
      }
    }
  }, 1);
}

}  // namespace sparrow::ops
