// Matching mirrors HF AddedVocabulary::find_matches: scan for the leftmost-longest match;
// a special token is skipped (left as text) when special-token parsing is off; single_word
// tokens must not touch word characters on either side; lstrip / rstrip extend the match
// over adjacent whitespace, which is then swallowed by the token.
#include "sparrow/tokenizer/added_vocabulary.h"

#include "sparrow/tokenizer/pre_tokenizer.h"
#include "sparrow/tokenizer/utf8.h"

namespace sparrow {

void TokenTrie::insert(std::string_view s, int32_t token_index) {
  if (s.empty()) return;
  int32_t node = 0;
  for (unsigned char c : s) {
    int32_t child = -1;
    for (auto& [b, k] : nodes_[node].kids)
      if (b == c) child = k;
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_[node].kids.emplace_back(c, child);
      nodes_.emplace_back();
    }
    node = child;
  }
  if (nodes_[node].token < 0) nodes_[node].token = token_index;
  first_[static_cast<unsigned char>(s[0])] = true;
}

int32_t TokenTrie::longest_at(std::string_view text, size_t pos, size_t& len) const {
  int32_t node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    int32_t child = -1;
    for (const auto& [b, k] : nodes_[node].kids)
      if (b == static_cast<unsigned char>(text[i])) {
        child = k;
        break;
      }
    if (child < 0) break;
    node = child;
    if (nodes_[node].token >= 0) {
      best = nodes_[node].token;
      len = i + 1 - pos;
    }
  }
  return best;
}

void AddedVocabulary::add(AddedToken token, std::string normalized_content) {
  int32_t index = static_cast<int32_t>(tokens_.size());
  if (token.normalized) {
    normalized_trie_.insert(normalized_content, index);
  } else {
    raw_trie_.insert(token.content, index);
  }
  tokens_.push_back(std::move(token));
}

namespace {

// Unicode White_Space, which Rust's char::is_whitespace tests.
bool is_space(char32_t c) {
  return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// A "word" character for single_word: HF tests the neighbouring character with Oniguruma's
// Unicode \w, which is Letter | Mark | Decimal_Number | Connector_Punctuation.
bool is_word(char32_t c) {
  if (c < 0x80) return c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
  static const Regex word(R"([\p{L}\p{M}\p{Nd}\p{Pc}])");
  std::string ch;
  utf8::append(ch, c);
  size_t b, e;
  return word.find(ch, 0, b, e);
}

char32_t last_char(std::string_view s, size_t end, size_t& start) {
  size_t i = end;
  do --i;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80);
  start = i;
  size_t j = i;
  return utf8::next(s, j);
}

}  // namespace

void AddedVocabulary::split(std::string_view text, bool normalized_pass, bool parse_special,
                            std::vector<Segment>& out) const {
  const TokenTrie& trie = normalized_pass ? normalized_trie_ : raw_trie_;
  if (trie.empty()) {
    if (!text.empty()) out.push_back(Segment{-1, text});
    return;
  }
  size_t offset = 0;  // end of the last emitted piece
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.may_start(static_cast<unsigned char>(text[pos]))) {
      ++pos;
      continue;
    }
    size_t len = 0;
    int32_t index = trie.longest_at(text, pos, len);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[index];
    size_t start = pos, stop = pos + len;
    pos = stop;  // matches do not overlap, even skipped ones
    if (tok.special && !parse_special) continue;
    if (tok.single_word) {
      size_t cs;
      bool start_ok = start == 0 || !is_word(last_char(text, start, cs));
      size_t j = stop;
      bool stop_ok = stop == text.size() || !is_word(utf8::next(text, j));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok.lstrip) {
      size_t cs;
      while (start > offset && is_space(last_char(text, start, cs))) start = cs;
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t j = stop;
        if (!is_space(utf8::next(text, j))) break;
        stop = j;
      }
      pos = stop;
    }
    if (start > offset) out.push_back(Segment{-1, text.substr(offset, start - offset)});
    out.push_back(Segment{tok.id, {}});
    offset = stop;
  }
  if (offset < text.size()) out.push_back(Segment{-1, text.substr(offset)});
}

}  // namespace sparrow
