#include "sparrow/engine/sampler.h"

#include "sparrow/core/hash.h"
#include "sparrow/kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sparrow {
namespace {

uint64_t step(uint64_t x) { return mix64(x + kGolden64); }  // one splitmix64 draw

}  // namespace

double keyed_uniform(uint64_t seed, int64_t position, int64_t index) {
  const uint64_t h = step(step(step(seed) ^ uint64_t(position)) ^ uint64_t(index));
  return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1), never 0 or 1
}

// Mirrors the steps of sample() below that change logits before a greedy choice.
bool plain_argmax(const SamplingParams& p, int64_t outputs) {
  return p.greedy() && p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f &&
         outputs >= p.min_new_tokens;
}

int32_t Sampler::sample(float* logits, int64_t vocab, const SamplingParams& p, const SamplingState& s) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (p.repetition_penalty != 1.0f) {
    auto penalize = [&](int32_t t) {
      float& l = logits[t];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    };
    // Each distinct token is penalized once, however often it occurs.
    counts_.assign(size_t(vocab), 0);
    for (int32_t t : s.prompt) if (!counts_[size_t(t)]++) penalize(t);
    for (int32_t t : s.output) if (!counts_[size_t(t)]++) penalize(t);
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    counts_.assign(size_t(vocab), 0);
    for (int32_t t : s.output) ++counts_[size_t(t)];
    for (int32_t t : s.output) {
      if (counts_[size_t(t)] == 0) continue;
      logits[t] -= p.frequency_penalty * float(counts_[size_t(t)]) + p.presence_penalty;
      counts_[size_t(t)] = 0;  // apply once per distinct token
    }
  }
  if (int32_t(s.output.size()) < p.min_new_tokens) {
    if (!p.ignore_eos)
      for (int64_t e : s.eos_ids) if (e >= 0 && e < vocab) logits[e] = kNegInf;
    for (int32_t t : p.stop_token_ids) logits[t] = kNegInf;
  }
  if (p.greedy()) {  // the same choice the GPU makes for argmax-only steps (ops::argmax_rows)
    int32_t best = 0;
    ops::argmax_rows(Tensor(logits, DType::kF32, {1, vocab}), &best);
    return best;
  }
  // Candidates sorted by logit (descending, ties to the lower id), then truncated.
  order_.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) order_[size_t(i)] = int32_t(i);
  int64_t keep = vocab;
  if (p.top_k > 0) keep = std::min<int64_t>(keep, p.top_k);
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (keep < vocab) std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(), better);
  else std::sort(order_.begin(), order_.end(), better);
  const float inv_t = 1.0f / p.temperature;
  const float mx = logits[order_[0]] * inv_t;
  probs_.resize(size_t(keep));
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += probs_[size_t(i)] = std::exp(logits[order_[size_t(i)]] * inv_t - mx);
  // top-p: the smallest prefix whose mass reaches top_p; min-p: drop tokens below min_p * max.
  double cum = 0;
  int64_t cut = keep;
  for (int64_t i = 0; i < keep; ++i) {
    const double pr = probs_[size_t(i)] / sum;
    if (p.min_p > 0 && pr < double(p.min_p) * (probs_[0] / sum)) { cut = i; break; }
    cum += pr;
    if (cum >= double(p.top_p) && p.top_p < 1.0f) { cut = i + 1; break; }
  }
  cut = std::max<int64_t>(cut, 1);
  // Gumbel-max over the kept candidates: argmax(log p + g), g keyed on the token id.
  int32_t best = order_[0];
  double best_score = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < cut; ++i) {
    const int32_t tok = order_[size_t(i)];
    if (!(probs_[size_t(i)] > 0)) continue;
    const double g = -std::log(-std::log(keyed_uniform(s.seed, s.position, tok)));
    const double score = std::log(double(probs_[size_t(i)])) + g;
    if (score > best_score) { best_score = score; best = tok; }
  }
  return best;
}

}  // namespace sparrow
