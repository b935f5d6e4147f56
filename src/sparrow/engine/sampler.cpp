#include "sparrow/engine/sampler.h"

#include "sparrow/kernels/ops.h"

#include <limits>

namespace sparrow {

RowSampling row_sampling(const SamplingParams& p, uint64_t seed, int64_t position) {
  return {p.temperature, p.top_k, p.top_p, p.min_p, seed, position};
}

// Mirrors the steps of sample() below that change logits before ops::sample_rows.
bool samples_logits_as_given(const SamplingParams& p, int64_t outputs) {
  return p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f &&
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
  int32_t tok = 0;
  const RowSampling rs = row_sampling(p, s.seed, s.position);
  ops::sample_rows(Tensor(logits, DType::kF32, {1, vocab}), &rs, &tok);
  return tok;
}

}  // namespace sparrow
