// RowSampling: what ops::sample_rows needs to choose one logits row's token, the last stage
// of the engine's Sampler (after its penalties and masks); RowLogprobs / RowLogprobsOut:
// what ops::row_logprobs reports about the chosen token (output logprobs). Plain data,
// shared by the CPU and CUDA implementations (kernels/cpu/sampling.cpp,
// kernels/cuda/sampling.cu).
#pragma once

#include <cstdint>

namespace sparrow {

// keyed_uniform lies in [2^-54, 1 - 2^-54], so the Gumbel noise -log(-log u) lies in
// [-3.62, 37.43]: a token with log p < -41.05 scores below the most likely token (log p =
// 0, always a candidate) whatever the draws. Both samplers skip such tokens' noise.
constexpr float kSampleHopelessLogProb = -42.0f;

struct RowSampling {
  float temperature = 0.f;  // 0: greedy (the row's argmax, ties to the lower id)
  int32_t top_k = -1;       // <= 0: the whole vocabulary
  float top_p = 1.f;        // in (0, 1]
  float min_p = 0.f;        // in [0, 1]
  uint64_t seed = 0;        // keyed_uniform(seed, position, token id) is token id's noise
  int64_t position = 0;     // absolute position of the token being chosen
};

// The output logprobs of one sampled row, under the full-vocabulary fp32 log-softmax of
// the logits as given (lp_i = l_i - lse; before temperature, as the host path reports
// them). Larger requests stay on the host path (the scheduler checks these caps).
constexpr int kRowLogprobsMaxTop = 64;  // top_logprobs_num
constexpr int kRowLogprobsMaxIds = 64;  // token_ids_logprob entries

struct RowLogprobs {
  int32_t top_n = -1;   // < 0: the row wants nothing; else the chosen token's lp and the top_n best (<= kRowLogprobsMaxTop)
  int32_t num_ids = 0;  // lp at ids[0, num_ids) (each in [0, V))
  int32_t ids[kRowLogprobsMaxIds] = {};
};

struct RowLogprobsOut {
  float logprob = 0.f;                     // lp of the row's chosen token
  int32_t top_ids[kRowLogprobsMaxTop];     // [min(top_n, V)]: lp descending, ties to the lower id
  float top_logprobs[kRowLogprobsMaxTop];  // their lp
  float id_logprobs[kRowLogprobsMaxIds];   // [num_ids]: lp at RowLogprobs::ids
};

}  // namespace sparrow
