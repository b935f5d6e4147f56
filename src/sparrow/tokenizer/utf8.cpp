// UTF-8 validation follows the table of well-formed byte sequences (Unicode 3.9, table 3-7):
// the second byte's range depends on the lead byte, which excludes overlongs, surrogates and
// code points above U+10FFFF. Replacement uses maximal subparts so that our output matches
// Hugging Face's decode (Rust from_utf8_lossy) byte for byte.
#include "sparrow/tokenizer/utf8.h"

namespace sparrow::utf8 {

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

char32_t next(std::string_view s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  int n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
  char32_t cp = b & (0x7F >> n);
  for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

namespace {

// Expected total length for lead byte b (0 if b cannot start a sequence), and the allowed
// range of the second byte.
int lead_info(unsigned char b, unsigned char& lo, unsigned char& hi) {
  lo = 0x80;
  hi = 0xBF;
  if (b < 0x80) return 1;
  if (b < 0xC2) return 0;
  if (b < 0xE0) return 2;
  if (b == 0xE0) lo = 0xA0;
  if (b == 0xED) hi = 0x9F;
  if (b < 0xF0) return 3;
  if (b == 0xF0) lo = 0x90;
  if (b == 0xF4) hi = 0x8F;
  if (b < 0xF5) return 4;
  return 0;
}

// Number of bytes from s[i] that form a prefix of a valid sequence (capped at the expected
// length), plus the expected length.
size_t valid_prefix(std::string_view s, size_t i, int& expected) {
  unsigned char lo, hi;
  expected = lead_info(static_cast<unsigned char>(s[i]), lo, hi);
  if (expected == 0) return 0;
  size_t k = 1;
  for (; k < static_cast<size_t>(expected) && i + k < s.size(); ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
  }
  return k;
}

}  // namespace

size_t valid_sequence_length(std::string_view s, size_t i) {
  int expected;
  size_t k = valid_prefix(s, i, expected);
  return (expected > 0 && k == static_cast<size_t>(expected)) ? k : 0;
}

size_t maximal_subpart_length(std::string_view s, size_t i) {
  int expected;
  size_t k = valid_prefix(s, i, expected);
  return k == 0 ? 1 : k;
}

bool is_incomplete_tail(std::string_view s, size_t i) {
  int expected;
  size_t k = valid_prefix(s, i, expected);
  return expected > 1 && k < static_cast<size_t>(expected) && i + k == s.size();
}

std::string to_valid_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    // ASCII runs are the common case.
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      out.push_back(s[i++]);
      continue;
    }
    size_t n = valid_sequence_length(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      i += maximal_subpart_length(s, i);
    }
  }
  return out;
}

bool is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t n = valid_sequence_length(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

}  // namespace sparrow::utf8
