// Added tokens (tokenizer.json "added_tokens"): matched in the text before normalization and
// BPE, leftmost first and longest at a position (HF uses Aho-Corasick LeftmostLongest), with
// the lstrip / rstrip / single_word flags. Tokens with normalized=false are matched on the
// raw text, those with normalized=true on the normalized text of the gaps, as HF does.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sparrow {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool single_word = false;
};

// A byte trie over token contents; finds the longest token starting at a position.
class TokenTrie {
 public:
  void insert(std::string_view s, int32_t token_index);
  bool empty() const { return nodes_.size() <= 1; }
  // Longest match at text[pos...]; returns the token index and sets len, or -1.
  int32_t longest_at(std::string_view text, size_t pos, size_t& len) const;
  // True if some token starts with byte b (a cheap filter before longest_at).
  bool may_start(unsigned char b) const { return first_[b]; }

 private:
  struct Node {
    int32_t token = -1;
    std::vector<std::pair<unsigned char, int32_t>> kids;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_[256] = {};
};

// One piece of the input after added-token extraction: either an added token, or text.
struct Segment {
  int32_t token = -1;     // the added token's id, or -1 for text
  std::string_view text;  // text (for token == -1)
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  void add(AddedToken token, std::string normalized_content);
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // Splits `text` by the tokens of one trie (raw or normalized pass). With parse_special
  // false, special tokens are not matched (HF encode_special_tokens=true); non-special added
  // tokens still are.
  void split(std::string_view text, bool normalized_pass, bool parse_special, std::vector<Segment>& out) const;
  bool has_normalized() const { return !normalized_trie_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  TokenTrie raw_trie_, normalized_trie_;
};

}  // namespace sparrow
