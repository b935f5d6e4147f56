// The alphabet: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves;
// the other 68 bytes, in increasing order, take U+0100, U+0101, ... This is the table from
// GPT-2's bytes_to_unicode(), which tokenizer.json vocabularies are written in.
#include "sparrow/tokenizer/byte_level.h"

#include <unordered_map>

#include "sparrow/tokenizer/utf8.h"

namespace sparrow::byte_level {

namespace {

struct Tables {
  std::array<char32_t, 256> to_char{};
  std::unordered_map<char32_t, unsigned char> to_byte;
  Tables() {
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_char[b]] = static_cast<unsigned char>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_char(unsigned char b) { return tables().to_char[b]; }

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8::append(out, tables().to_char[b]);
  return out;
}

std::string decode_token(std::string_view token) {
  const auto& t = tables();
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    auto it = t.to_byte.find(utf8::next(token, i));
    if (it == t.to_byte.end()) return std::string(token);
    out.push_back(static_cast<char>(it->second));
  }
  return out;
}

}  // namespace sparrow::byte_level
