// RowSampling: what ops::sample_rows needs to choose one logits row's token, the last stage
// of the engine's Sampler (or the token a teacher-forced row is given); LogitEdit: one logit's change before it (the Sampler's
// penalties and masks, ops::apply_logit_edits); RowLogprobs / RowLogprobsOut:
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
  // >= 0: a teacher-forced row (a prompt position whose input logprobs are wanted): its
  // token is this one, no draw; the rest is ignored. In [0, V).
  int32_t forced = -1;
};

// One logit's edit before sampling (the engine's penalties and min_new_tokens masks, built
// on the host by LogitEditor, engine/sampler.h): l = rep != 1 ? (l > 0 ? l / rep : l * rep)
// : l; l -= sub; if (mask) l = -inf. Each rounded in fp32 on its own (no fused multiply-
// add), so the CPU and the GPU edit to the same bits. A step's edits name distinct
// (row, token) pairs.
struct LogitEdit {
  int32_t row = 0;    // logits row
  int32_t token = 0;  // in [0, V)
  float rep = 1.f;    // repetition penalty (1: none)
  float sub = 0.f;    // frequency * count + presence
  int32_t mask = 0;   // nonzero: -inf (a stop token before min_new_tokens)
};

// Edits one step may carry to an executor that samples (ForwardBatch::logit_edits): the
// GPU keeps a buffer of this many at a fixed address (20 MiB, + 4 MiB for the originals);
// a step with more samples on the host. 8192 distinct tokens per row at 128 rows.
constexpr int64_t kMaxStepLogitEdits = int64_t(1) << 20;

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
