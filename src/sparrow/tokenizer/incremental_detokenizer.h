// Streaming detokenization: feed ids as they are generated, get text chunks back. Every chunk
// is valid UTF-8; a character is never split across chunks nor repeated; the concatenation of
// all chunks plus flush() equals Tokenizer::decode of all ids. Bytes that may still become a
// character are held back; bytes that never can are emitted as U+FFFD right away, by the same
// rule decode uses.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace sparrow {

class Tokenizer;

class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object.
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false);
  // Adds ids; returns the text that became complete (possibly empty).
  std::string push(int32_t id);
  std::string push(std::span<const int32_t> ids);
  // End of stream: returns what is left, with incomplete bytes replaced by U+FFFD.
  std::string flush();
  // Bytes held back waiting for the rest of a character (0 to 3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  std::string drain();
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace sparrow
