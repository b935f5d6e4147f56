// A generation request as the serving engine sees it, and the chunks of output it streams
// back. The HTTP layer builds Requests (text already tokenized; n > 1 already expanded into
// n requests) and turns OutputChunks into SGLang / OpenAI responses.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sparrow/engine/generate_types.h"
#include "sparrow/engine/sampling_params.h"

namespace sparrow {

struct Request {
  std::string rid;
  std::vector<int32_t> input_ids;
  SamplingParams sampling;
  bool return_logprob = false;
  int32_t logprob_start_len = -1;  // -1: output logprobs only
  int32_t top_logprobs_num = 0;
  std::vector<int32_t> token_ids_logprob;  // logprobs of these ids at every returned position
  bool stream = false;                     // chunks per step (else one chunk at the end)
};

// What the engine reports about a request. While streaming, one chunk per step that
// produced tokens; the last chunk has finished = true and carries the whole result.
struct OutputChunk {
  std::string rid;
  std::vector<int32_t> new_ids;  // tokens since the previous chunk
  std::string new_text;          // their text (incrementally detokenized, stop strings cut)
  std::vector<LogprobEntry> new_output_logprobs;
  std::vector<std::vector<TokenLogprob>> new_output_top_logprobs;
  std::vector<std::vector<TokenLogprob>> new_output_token_ids_logprobs;
  bool finished = false;
  std::optional<std::string> error;  // set when the request failed or was aborted
  GenerateResult result;             // complete on the final chunk
  std::string text;                  // full output text, on the final chunk
  std::optional<std::string> matched_stop_str;  // a stop string ended the request
};

using OutputSink = std::function<void(const OutputChunk&)>;

}  // namespace sparrow
