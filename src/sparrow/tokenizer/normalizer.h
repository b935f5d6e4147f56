// Normalizers of tokenizer.json ("normalizer" field). Qwen uses NFC; DeepSeek-V3 an empty
// Sequence. Anything else is refused at load time with an InputError naming the type.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace sparrow {

// Unicode Normalization Form C of valid UTF-8 `s`.
std::string nfc(std::string_view s);

class Normalizer {
 public:
  // `spec` is the JSON value of tokenizer.json's "normalizer" (may be null).
  explicit Normalizer(const nlohmann::json& spec);
  bool is_identity() const { return !nfc_; }
  // Appends the normalized form of `s` to `out`.
  void apply(std::string_view s, std::string& out) const;

 private:
  bool nfc_ = false;
};

}  // namespace sparrow
