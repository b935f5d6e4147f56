// Sampling parameters of one request, with SGLang's names and defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sparrow {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  int32_t top_k = -1;        // -1 (or 0): whole vocabulary
  float min_p = 0.0f;
  float frequency_penalty = 0.0f;   // output tokens, per occurrence
  float presence_penalty = 0.0f;    // output tokens, once
  float repetition_penalty = 1.0f;  // prompt and output tokens (divide positive logits)
  int32_t max_new_tokens = 128;
  int32_t min_new_tokens = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  int32_t n = 1;
  std::optional<uint64_t> sampling_seed;

  bool greedy() const { return temperature == 0.0f; }
  // Throws InputError naming the first invalid field (negative, NaN, out of range).
  void validate(int64_t vocab_size) const;
};

}  // namespace sparrow
