// Logprobs from fp32 logits rows: full-vocabulary fp32 log-softmax, the logprob of chosen
// tokens and top-N alternatives (descending, ties to the lower id). One definition for the
// scheduler's host path and the CPU ops::row_logprobs (the GPU kernel's oracle).
#pragma once

#include <cstdint>
#include <vector>

#include "sparrow/core/tensor.h"

namespace sparrow {

struct TokenLogprob {
  float logprob = 0.f;
  int32_t token_id = 0;
};

// The n highest entries of a log-softmax row, descending, ties to the lower id.
std::vector<TokenLogprob> top_n(const float* logprob_row, int64_t vocab, int n);

}  // namespace sparrow
