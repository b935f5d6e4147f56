#include "sparrow/engine/sampler.h"

#include "sparrow/core/error.h"
#include "sparrow/kernels/ops.h"

namespace sparrow {

RowSampling row_sampling(const SamplingParams& p, uint64_t seed, int64_t position) {
  return {p.temperature, p.top_k, p.top_p, p.min_p, seed, position};
}

// Mirrors the conditions under which LogitEditor::append adds entries.
bool samples_logits_as_given(const SamplingParams& p, int64_t outputs) {
  return p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f &&
         outputs >= p.min_new_tokens;
}

void LogitEditor::append(int32_t row, int64_t vocab, const SamplingParams& p, const SamplingState& s,
                         std::vector<LogitEdit>& out) {
  if (samples_logits_as_given(p, int64_t(s.output.size()))) return;
  if (int64_t(slot_.size()) < vocab) slot_.resize(size_t(vocab), 0);
  const size_t first = out.size();
  count_.clear();
  // The row's entry of token t, made on first sight.
  const auto entry = [&](int64_t t) -> size_t {
    SPARROW_CHECK(t >= 0 && t < vocab, "logit edit of token {} outside the vocabulary {}", t, vocab);
    int32_t& sl = slot_[size_t(t)];
    if (sl == 0) {
      out.push_back({row, int32_t(t), 1.0f, 0.0f, 0});
      count_.push_back(0);
      sl = int32_t(out.size() - first);
    }
    return size_t(sl - 1);
  };
  const auto reset = [&] {
    for (size_t i = first; i < out.size(); ++i) slot_[size_t(out[i].token)] = 0;
  };
  try {
    if (p.repetition_penalty != 1.0f) {
      for (int32_t t : s.prompt) out[first + entry(t)].rep = p.repetition_penalty;
      for (int32_t t : s.output) out[first + entry(t)].rep = p.repetition_penalty;
    }
    if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
      for (int32_t t : s.output) ++count_[entry(t)];
      for (size_t i = 0; i < count_.size(); ++i)
        if (count_[i] > 0) out[first + i].sub = p.frequency_penalty * float(count_[i]) + p.presence_penalty;
    }
    if (int64_t(s.output.size()) < p.min_new_tokens) {
      if (!p.ignore_eos)
        for (int64_t e : s.eos_ids)
          if (e >= 0 && e < vocab) out[first + entry(e)].mask = 1;
      for (int32_t t : p.stop_token_ids) out[first + entry(t)].mask = 1;
    }
  } catch (...) {
    reset();  // (the scratch stays all zeros for the next row)
    throw;
  }
  reset();
}

int32_t Sampler::sample(float* logits, int64_t vocab, const SamplingParams& p, const SamplingState& s) {
  const Tensor row(logits, DType::kF32, {1, vocab});
  edits_.clear();
  editor_.append(0, vocab, p, s, edits_);
  ops::apply_logit_edits(row, edits_.data(), int64_t(edits_.size()), nullptr);
  int32_t tok = 0;
  const RowSampling rs = row_sampling(p, s.seed, s.position);
  ops::sample_rows(row, &rs, &tok);
  return tok;
}

}  // namespace sparrow
