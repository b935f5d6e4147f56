// Output text of one request as it streams: incremental detokenization plus stop strings.
// The text a stop string would complete is held back until it either matches (then the
// text is cut before the stop string, as SGLang and OpenAI return it) or can no longer
// match. Every piece handed out is valid UTF-8.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sparrow/tokenizer/incremental_detokenizer.h"

namespace sparrow {

class Tokenizer;

class StopChecker {
 public:
  StopChecker(const Tokenizer& tokenizer, std::vector<std::string> stops, bool skip_special_tokens);

  // Adds a generated token. `hidden` tokens (a matched stop token id / EOS) add no text.
  // Returns true when a stop string has just matched.
  bool push(int32_t id, bool hidden);
  // Text not handed out yet. Unless `final`, a tail that could still start a stop string is
  // kept back.
  std::string take_text(bool final);
  const std::string& full_text() const { return text_; }
  const std::optional<std::string>& matched() const { return matched_; }

 private:
  IncrementalDetokenizer detok_;
  std::vector<std::string> stops_;
  size_t max_stop_ = 0;
  std::string text_;
  size_t sent_ = 0;
  std::optional<std::string> matched_;
};

}  // namespace sparrow
