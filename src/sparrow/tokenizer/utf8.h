// UTF-8 helpers shared by the tokenizer, the detokenizer and the chat-template interpreter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sparrow::utf8 {

// Appends the UTF-8 encoding of `cp` (assumed a valid scalar value) to `out`.
void append(std::string& out, char32_t cp);

// Decodes one code point at s[i] of a string known to be valid UTF-8; advances i.
char32_t next(std::string_view s, size_t& i);

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not the
// start of a complete valid sequence (invalid, or cut short by the end of `s`).
size_t valid_sequence_length(std::string_view s, size_t i);

// Length of the "maximal subpart of an ill-formed subsequence" at s[i] (Unicode 3.9, the rule
// Rust's String::from_utf8_lossy and Python's errors="replace" follow): the longest prefix of
// a valid sequence, at least 1 byte. Only meaningful where valid_sequence_length(s, i) == 0.
size_t maximal_subpart_length(std::string_view s, size_t i);

// True when the bytes from s[i] to the end are a proper prefix of some valid sequence, i.e.
// more bytes could still complete them (what a streaming decoder must hold back).
bool is_incomplete_tail(std::string_view s, size_t i);

// Replaces every ill-formed subsequence with U+FFFD, exactly as from_utf8_lossy does.
std::string to_valid_lossy(std::string_view bytes);

bool is_valid(std::string_view s);

}  // namespace sparrow::utf8
