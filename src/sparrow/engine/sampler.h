// Turns one fp32 logits row into the next token, given a request's sampling parameters and
// the tokens so far. Penalties first (repetition over prompt and output, frequency and
// presence over output), then min_new_tokens masking of stop tokens, all as LogitEdits
// (LogitEditor, applied by ops::apply_logit_edits: the executor's sampling on a GPU runs
// the same edits); temperature 0 is argmax; otherwise softmax(logits / T) filtered by
// top-k, top-p and min-p, and the token is drawn by Gumbel-max with noise keyed on (seed,
// position, token id): the same seed and position always draw the same token, whatever else
// is in the batch. The final choice is ops::sample_rows (kernels/), which the GPU runs too.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sparrow/engine/sampling_params.h"
#include "sparrow/kernels/row_sampling.h"

namespace sparrow {

struct SamplingState {
  std::span<const int32_t> prompt;
  std::span<const int32_t> output;
  std::span<const int64_t> eos_ids;  // masked with stop_token_ids until min_new_tokens
  uint64_t seed = 0;
  int64_t position = 0;  // absolute position of the token being chosen
};

// The one definition of the penalties and masks, as edits of distinct logits (LogitEdit):
// every distinct prompt or output token gets the repetition penalty (once, however often it
// occurs); every distinct output token frequency * count + presence subtracted; until
// min_new_tokens outputs, the eos ids (unless ignore_eos) and stop_token_ids are masked to
// -inf. Entries in order of first occurrence (prompt, output, eos ids, stop ids).
class LogitEditor {
 public:
  // Appends the edits of the row `row` (vocabulary `vocab`) to `out`. Scratch is reused
  // across calls (one LogitEditor per thread); the work is linear in the row's tokens.
  void append(int32_t row, int64_t vocab, const SamplingParams& p, const SamplingState& s, std::vector<LogitEdit>& out);

 private:
  std::vector<int32_t> slot_;   // [vocab]: 1 + the token's index into `out` for this row, 0: none (zeroed after each row)
  std::vector<int32_t> count_;  // per entry of this row: occurrences in the output
};

class Sampler {
 public:
  // `logits` [V] is modified in place (penalties and masks). One Sampler per thread: its
  // edits are scratch reused across calls.
  int32_t sample(float* logits, int64_t vocab, const SamplingParams& p, const SamplingState& s);

 private:
  LogitEditor editor_;
  std::vector<LogitEdit> edits_;
};

// The parameters sample() hands to ops::sample_rows for its final choice.
RowSampling row_sampling(const SamplingParams& p, uint64_t seed, int64_t position);

// Whether sample() leaves the logits as given (no penalty, and no min_new_tokens mask to
// apply after `outputs` tokens: LogitEditor appends nothing), so that it is exactly
// ops::sample_rows with row_sampling().
bool samples_logits_as_given(const SamplingParams& p, int64_t outputs);

}  // namespace sparrow
