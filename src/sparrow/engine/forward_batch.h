// ForwardBatch: the only thing a model sees of the scheduler's decisions.
//
// Data flow: requests -> (scheduler) -> ForwardBatch -> Model::forward -> logits rows ->
// sampler / logprobs. Extend and decode batches have the same shape: decode is an extend
// of one token per sequence, so both run the same attention code through the paged KV.
#pragma once

#include <cstdint>
#include <vector>

#include "sparrow/kernels/row_sampling.h"

namespace sparrow {

enum class ForwardMode : uint8_t {
  kExtend,  // prefill (possibly a chunk, possibly on top of a cached prefix)
  kDecode,  // one new token per sequence
  kIdle,    // no tokens; a rank with no work still steps with its peers (DP attention)
};

struct ForwardBatch {
  ForwardMode mode = ForwardMode::kExtend;
  // Per token [T]: token id, absolute position, and the KV slot its K/V are written to.
  std::vector<int32_t> input_ids;
  std::vector<int32_t> positions;
  std::vector<int32_t> out_cache_loc;
  // Per sequence [B]: req_to_token row, length after this step, tokens added this step, and
  // the first row of this sequence's tokens in the token arrays.
  std::vector<int32_t> req_slots;
  std::vector<int32_t> seq_lens;
  std::vector<int32_t> extend_lens;
  std::vector<int32_t> token_offsets;
  // Token rows whose logits the caller wants, in output order (e.g. each sequence's last
  // token, or every token when input logprobs are requested).
  std::vector<int32_t> logit_rows;
  // Empty: the caller wants the logits rows. Else one entry per logit row (a draw from the
  // logits once `logit_edits` are applied, a forced row whose token is given: a prompt
  // position's input logprobs, or a host row's placeholder): the executor returns each
  // row's ops::sample_rows token instead, which on a GPU saves copying [rows, V] logits to
  // the host.
  std::vector<RowSampling> sampling;
  // With `sampling`: the rows' penalties and min_new_tokens masks (LogitEditor; row = logit
  // row, in row order), applied before sample_rows (ops::sample_edited_rows). At most
  // kMaxStepLogitEdits.
  std::vector<LogitEdit> logit_edits;
  // Empty: none. Else (with `sampling`) one entry per logit row: the executor also reports
  // ops::row_logprobs for each row's chosen or forced token (its logprob, top-N and requested
  // ids' logprobs, under the logits before the edits), so a GPU returns a few floats per row
  // instead of the logits.
  std::vector<RowLogprobs> logprobs;
  // With `sampling`: logit rows (ascending) the executor cannot choose (logprob requests
  // beyond RowLogprobs' caps, penalties beyond the edit buffer, ...): their logits come
  // back to the caller's logits buffer (its row r = logit row r) and the host samples and
  // reports them; their `sampling` entries are placeholders (forced to token 0: no draw),
  // with no edits and no logprobs (top_n -1).
  std::vector<int32_t> host_rows;

  int32_t num_tokens() const { return int32_t(input_ids.size()); }
  int32_t batch_size() const { return int32_t(req_slots.size()); }

  // Appends sequence `req_slot` whose tokens `ids` occupy positions [start, start+n) and KV
  // slots `slots`; its length becomes start + n.
  void add_sequence(int32_t req_slot, int32_t start, const int32_t* ids, const int32_t* slots, int32_t n) {
    req_slots.push_back(req_slot);
    token_offsets.push_back(num_tokens());
    extend_lens.push_back(n);
    seq_lens.push_back(start + n);
    for (int32_t i = 0; i < n; ++i) {
      input_ids.push_back(ids[i]);
      positions.push_back(start + i);
      out_cache_loc.push_back(slots[i]);
    }
  }
};

}  // namespace sparrow
