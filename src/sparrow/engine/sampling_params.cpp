#include "sparrow/engine/sampling_params.h"

#include <cmath>

#include "sparrow/core/error.h"

namespace sparrow {

void SamplingParams::validate(int64_t vocab_size) const {
  auto finite = [](float v) { return std::isfinite(v); };
  SPARROW_REQUIRE(finite(temperature) && temperature >= 0.f, "temperature must be a finite number >= 0, got {}", temperature);
  SPARROW_REQUIRE(finite(top_p) && top_p > 0.f && top_p <= 1.f, "top_p must be in (0, 1], got {}", top_p);
  SPARROW_REQUIRE(top_k == -1 || top_k >= 0, "top_k must be -1 (disabled) or >= 0, got {}", top_k);
  SPARROW_REQUIRE(finite(min_p) && min_p >= 0.f && min_p <= 1.f, "min_p must be in [0, 1], got {}", min_p);
  SPARROW_REQUIRE(finite(frequency_penalty) && frequency_penalty >= -2.f && frequency_penalty <= 2.f,
                  "frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  SPARROW_REQUIRE(finite(presence_penalty) && presence_penalty >= -2.f && presence_penalty <= 2.f,
                  "presence_penalty must be in [-2, 2], got {}", presence_penalty);
  SPARROW_REQUIRE(finite(repetition_penalty) && repetition_penalty > 0.f && repetition_penalty <= 2.f,
                  "repetition_penalty must be in (0, 2], got {}", repetition_penalty);
  SPARROW_REQUIRE(max_new_tokens >= 0, "max_new_tokens must be >= 0, got {}", max_new_tokens);
  SPARROW_REQUIRE(min_new_tokens >= 0 && min_new_tokens <= max_new_tokens,
                  "min_new_tokens must be in [0, max_new_tokens], got {}", min_new_tokens);
  SPARROW_REQUIRE(n >= 1 && n <= 64, "n must be in [1, 64], got {}", n);
  for (int32_t id : stop_token_ids)
    SPARROW_REQUIRE(id >= 0 && id < vocab_size, "stop_token_ids: {} is outside the vocabulary [0, {})", id, vocab_size);
  for (const std::string& s : stop) SPARROW_REQUIRE(!s.empty(), "stop strings must not be empty");
}

}  // namespace sparrow
