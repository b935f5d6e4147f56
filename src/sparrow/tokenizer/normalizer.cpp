// NFC = canonical decomposition, canonical reordering of combining marks, then canonical
// composition (UAX #15). Hangul syllables are decomposed/composed arithmetically; everything
// else uses the generated tables in unicode_nfc_data.cpp. A quick check skips all of it for
// text that has no code point which NFC could change (almost all input).
#include "sparrow/tokenizer/normalizer.h"

#include <algorithm>
#include <vector>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/unicode_nfc_data.h"
#include "sparrow/tokenizer/utf8.h"

namespace sparrow {

namespace ud = unicode_data;

namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

uint8_t ccc(char32_t cp) {
  if (cp < 0x300) return 0;
  auto* end = ud::kCcc + ud::kCccSize;
  auto* it = std::lower_bound(ud::kCcc, end, cp, [](const ud::CccEntry& e, char32_t c) { return e.cp < c; });
  return (it != end && it->cp == cp) ? it->ccc : 0;
}

bool unsafe(char32_t cp) {
  if (cp < 0x300) return false;
  auto* end = ud::kNfcUnsafe + ud::kNfcUnsafeSize;
  auto* it = std::upper_bound(ud::kNfcUnsafe, end, cp, [](char32_t c, const ud::RangeEntry& e) { return c < e.lo; });
  return it != ud::kNfcUnsafe && cp <= (it - 1)->hi;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    int s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto* end = ud::kDecomp + ud::kDecompSize;
  auto* it = std::lower_bound(ud::kDecomp, end, cp, [](const ud::DecompEntry& e, char32_t c) { return e.cp < c; });
  if (it != end && it->cp == cp) {
    out.insert(out.end(), ud::kDecompData + it->offset, ud::kDecompData + it->offset + it->length);
  } else {
    out.push_back(cp);
  }
}

// Returns the primary composite of (a, b) or 0.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto* end = ud::kCompose + ud::kComposeSize;
  auto* it = std::lower_bound(ud::kCompose, end, std::pair{a, b}, [](const ud::ComposeEntry& e, std::pair<char32_t, char32_t> k) {
    return e.first < k.first || (e.first == k.first && e.second < k.second);
  });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

std::string nfc(std::string_view s) {
  // Quick check: ASCII and code points NFC never touches pass through unchanged.
  bool needed = false;
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    if (unsafe(utf8::next(s, i))) {
      needed = true;
      break;
    }
  }
  if (!needed) return std::string(s);

  std::vector<char32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) decompose(utf8::next(s, i), cps);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (ccc(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j, [](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  // Canonical composition: a character combines with the last starter unless blocked by an
  // intervening character of equal or higher class (or any starter).
  std::vector<char32_t> out;
  out.reserve(cps.size());
  long starter = -1;
  int last_ccc = -1;
  for (char32_t c : cps) {
    int cc = ccc(c);
    if (starter >= 0 && (last_ccc < cc || (last_ccc == 0 && static_cast<long>(out.size()) == starter + 1))) {
      if (char32_t comp = compose_pair(out[starter], c)) {
        out[starter] = comp;
        continue;
      }
    }
    if (cc == 0) {
      starter = static_cast<long>(out.size());
      last_ccc = 0;
    } else {
      last_ccc = cc;
    }
    out.push_back(c);
  }
  std::string result;
  result.reserve(s.size());
  for (char32_t c : out) utf8::append(result, c);
  return result;
}

Normalizer::Normalizer(const nlohmann::json& spec) {
  if (spec.is_null()) return;
  std::string type = spec.value("type", "");
  if (type == "NFC") {
    nfc_ = true;
  } else if (type == "Sequence") {
    for (const auto& n : spec.at("normalizers")) {
      Normalizer inner(n);
      SPARROW_REQUIRE(inner.is_identity() || !nfc_, "tokenizer.json: nested normalizer sequences are not supported");
      nfc_ = nfc_ || inner.nfc_;
    }
  } else {
    throw_input_error("tokenizer.json: normalizer type '{}' is not supported (supported: NFC, Sequence of NFC)", type);
  }
}

void Normalizer::apply(std::string_view s, std::string& out) const {
  if (nfc_) {
    out += nfc(s);
  } else {
    out.append(s);
  }
}

}  // namespace sparrow
