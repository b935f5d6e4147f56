// Unicode tables for NFC, generated into unicode_nfc_data.cpp by python/gen_unicode_nfc.py.
// Every table is sorted by its first field so lookups are binary searches.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparrow::unicode_data {

struct CccEntry {
  char32_t cp;
  uint8_t ccc;
};
struct DecompEntry {
  char32_t cp;
  uint32_t offset;  // into kDecompData
  uint32_t length;
};
struct ComposeEntry {
  char32_t first;
  char32_t second;
  char32_t composite;
};
struct RangeEntry {
  char32_t lo;
  char32_t hi;  // inclusive
};

extern const CccEntry kCcc[];
extern const size_t kCccSize;
extern const DecompEntry kDecomp[];
extern const size_t kDecompSize;
extern const char32_t kDecompData[];
extern const ComposeEntry kCompose[];
extern const size_t kComposeSize;
extern const RangeEntry kNfcUnsafe[];
extern const size_t kNfcUnsafeSize;

}  // namespace sparrow::unicode_data
