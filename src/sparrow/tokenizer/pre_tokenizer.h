// Pre-tokenizers of tokenizer.json: splits of the text by regex before BPE. Supported: Split
// (Regex or String pattern; behaviours Isolated, Removed, MergedWithPrevious,
// MergedWithNext; invert false), ByteLevel (add_prefix_space false, with or without its GPT-2
// regex) and Sequence of these. Regexes run on PCRE2 with UTF + UCP (Unicode \s, \p{..}) and JIT.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string_view>
#include <vector>

namespace sparrow {

class Regex;

class PreTokenizer {
 public:
  explicit PreTokenizer(const nlohmann::json& spec);  // tokenizer.json "pre_tokenizer"
  ~PreTokenizer();
  // Fills `out` with the pre-tokens of `text` (valid UTF-8), in order: views into `text`.
  // The byte-level mapping is left to the BPE model.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  struct Step {
    std::unique_ptr<Regex> regex;
    enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext } behavior;
  };
  void add(const nlohmann::json& spec);
  std::vector<Step> steps_;
};

// A compiled PCRE2 pattern (UTF, UCP, JIT). Thread-safe for concurrent matching.
class Regex {
 public:
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Finds the next match in subject at or after `start`. Returns false if none; otherwise
  // sets [begin, end). Subject must be valid UTF-8.
  bool find(std::string_view subject, size_t start, size_t& begin, size_t& end) const;

 private:
  void* code_;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace sparrow
