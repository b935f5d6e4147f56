// Requests and results of offline generation, in the vocabulary of SGLang's /generate.
// The HTTP server reuses these and the JSON builder in response_json.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sparrow/kernels/logprobs.h"

namespace sparrow {

struct GenerateRequest {
  std::string rid;
  std::vector<int32_t> input_ids;
  int32_t max_new_tokens = 128;
  float temperature = 0.f;           // 0 = greedy
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  bool return_logprob = false;
  // First prompt position whose logprob is returned; -1: none (output logprobs only).
  int32_t logprob_start_len = -1;
  int32_t top_logprobs_num = 0;
};

struct FinishReason {
  enum class Kind : uint8_t { kLength, kStop } kind = Kind::kLength;
  int32_t length = 0;    // kLength: tokens generated
  int32_t matched = -1;  // kStop: the stop token id (-1 when a stop string matched)
  std::optional<std::string> matched_str;  // kStop: the stop string that matched
};

// One entry of input/output_token_logprobs; logprob is empty for the first prompt token.
struct LogprobEntry {
  std::optional<float> logprob;
  int32_t token_id = 0;
};

struct GenerateResult {
  std::string rid;
  std::vector<int32_t> output_ids;
  FinishReason finish;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
  double e2e_latency_s = 0.0;
  bool has_logprobs = false;
  std::vector<LogprobEntry> input_token_logprobs;
  std::vector<std::optional<std::vector<TokenLogprob>>> input_top_logprobs;  // nullopt: first token
  std::vector<LogprobEntry> output_token_logprobs;
  std::vector<std::vector<TokenLogprob>> output_top_logprobs;
  bool has_top_logprobs = false;
  // Logprobs of the request's token_ids_logprob at every returned position (same alignment
  // as input/output_token_logprobs; the first prompt token's entry is empty).
  bool has_token_ids_logprobs = false;
  std::vector<std::vector<TokenLogprob>> input_token_ids_logprobs;
  std::vector<std::vector<TokenLogprob>> output_token_ids_logprobs;
};

}  // namespace sparrow
