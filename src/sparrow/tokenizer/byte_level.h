// GPT-2 byte-level alphabet: every byte maps to one printable code point so that BPE vocab
// entries are strings; tokens are turned back into bytes through the inverse map.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace sparrow::byte_level {

// The code point that stands for byte b (e.g. ' ' -> U+0120 'Ġ').
char32_t byte_to_char(unsigned char b);

// UTF-8 of the byte-level form of `bytes` (one code point per byte).
std::string encode(std::string_view bytes);

// Inverse of encode for one token, as HF's ByteLevel decoder does it: if every code point of
// `token` is in the alphabet, the bytes they stand for; otherwise the token's own UTF-8 bytes
// (added tokens such as "<｜User｜>" fall here).
std::string decode_token(std::string_view token);

}  // namespace sparrow::byte_level
