// Turns one fp32 logits row into the next token, given a request's sampling parameters and
// the tokens so far. Penalties first (repetition over prompt and output, frequency and
// presence over output), then min_new_tokens masking of stop tokens; temperature 0 is
// argmax; otherwise softmax(logits / T) filtered by top-k, top-p and min-p, and the token is
// drawn by Gumbel-max with noise keyed on (seed, position, token id): the same seed and
// position always draw the same token, whatever else is in the batch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sparrow/engine/sampling_params.h"

namespace sparrow {

struct SamplingState {
  std::span<const int32_t> prompt;
  std::span<const int32_t> output;
  std::span<const int64_t> eos_ids;  // masked with stop_token_ids until min_new_tokens
  uint64_t seed = 0;
  int64_t position = 0;  // absolute position of the token being chosen
};

class Sampler {
 public:
  // `logits` [V] is modified in place (penalties and masks). `scratch` is reused across calls.
  int32_t sample(float* logits, int64_t vocab, const SamplingParams& p, const SamplingState& s);

 private:
  std::vector<int32_t> order_;
  std::vector<float> probs_;
  std::vector<int32_t> counts_;
};

// Whether sample() returns the plain argmax of the logits as given (greedy, with no penalty
// and no min_new_tokens mask to apply after `outputs` tokens): a caller may then take
// ops::argmax_rows of the logits (on the device) instead of calling sample().
bool plain_argmax(const SamplingParams& p, int64_t outputs);

// Uniform in (0, 1) from (seed, position, index): a stateless counter-based generator.
double keyed_uniform(uint64_t seed, int64_t position, int64_t index);

}  // namespace sparrow
