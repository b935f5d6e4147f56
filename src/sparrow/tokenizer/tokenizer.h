// Sparrow's tokenizer: loads a Hugging Face tokenizer directory (tokenizer.json,
// tokenizer_config.json, and generation_config.json / config.json when present) and
// reproduces HF `tokenizers` encode/decode and `transformers` apply_chat_template exactly
// for the byte-level BPE tokenizers of Qwen2/2.5/3 and DeepSeek-V3 (see docs/tokenizer.md).
//
// Data flow of encode: text -> added/special tokens split out (raw pass) -> NFC etc. on the
// gaps -> normalized added tokens split out -> pre-tokenizer regex splits -> byte-level BPE.
// Decode: ids -> token bytes -> UTF-8 with U+FFFD for ill-formed bytes.
//
// All const methods are safe to call from many threads at once (caches are per thread).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sparrow/tokenizer/added_vocabulary.h"

namespace sparrow {

class BpeModel;
class ChatTemplate;
class Normalizer;
class PreTokenizer;

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json (required), DIR/tokenizer_config.json (optional: chat template,
  // special tokens), DIR/chat_template.jinja (optional, overrides the config's template, as in
  // transformers), DIR/generation_config.json and DIR/config.json (optional: stop ids).
  // Missing or malformed files throw InputError naming the file.
  static std::unique_ptr<Tokenizer> from_dir(const std::string& dir);
  // Same from already parsed JSON (null for absent configs).
  static std::unique_ptr<Tokenizer> from_json(const nlohmann::json& tokenizer_json,
                                              const nlohmann::json& tokenizer_config = nullptr,
                                              const nlohmann::json& generation_config = nullptr,
                                              const nlohmann::json& model_config = nullptr);
  ~Tokenizer();

  // Token ids of `text`, without any BOS/EOS (HF encode(add_special_tokens=False); for these
  // tokenizers that is also what transformers' tokenizer(text) gives). With parse_special,
  // the text of an added token ("<|im_start|>") becomes that token, as in HF by default; with
  // parse_special false, special tokens are encoded as plain text (HF
  // encode_special_tokens=True / split_special_tokens=True); non-special added tokens still
  // match. Ill-formed UTF-8 in `text` is first replaced by U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;

  // Text of `ids` as HF decode(ids, skip_special_tokens) gives it. Unknown ids are skipped.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // Raw bytes of one token (possibly part of a UTF-8 sequence); empty for unknown ids and, with
  // skip_special, for special tokens. The building block of IncrementalDetokenizer.
  std::string_view token_bytes(int32_t id, bool skip_special = false) const;

  // Largest id + 1 (vocab plus added tokens), HF get_vocab_size(with_added_tokens=True).
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // vocab form ("Ġthe"); empty if unknown
  bool is_special(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  bool has_chat_template() const { return !chat_template_.empty(); }
  const std::string& chat_template() const { return chat_template_; }
  // Renders the chat template as transformers' apply_chat_template(tokenize=False) does:
  // messages (array of objects), tools (array or null), add_generation_prompt, and extra
  // template variables in `kwargs` (object or null, e.g. {"enable_thinking": false}).
  // bos_token / eos_token / pad_token / unk_token are available to the template. Ordered JSON
  // keeps the caller's key order, which tojson output depends on. Throws InputError if there
  // is no template or the template rejects the input (raise_exception, undefined values).
  std::string apply_chat_template(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                  bool add_generation_prompt,
                                  const nlohmann::ordered_json& kwargs = nullptr) const;

  // Special tokens from tokenizer_config.json ("" / nullopt when not set).
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  const std::string& pad_token() const { return pad_token_; }
  std::optional<int32_t> bos_token_id() const { return bos_id_; }
  std::optional<int32_t> eos_token_id() const { return eos_id_; }
  std::optional<int32_t> pad_token_id() const { return pad_id_; }
  // tokenizer_config.json add_bos_token (informational: encode() never adds a BOS; chat
  // templates write it themselves).
  bool add_bos_token() const { return add_bos_token_; }
  // Ids that end generation: generation_config.json eos_token_id (an int or a list), else
  // config.json's, plus the tokenizer's eos token; in that order, without duplicates.
  const std::vector<int32_t>& stop_token_ids() const { return stop_ids_; }

 private:
  Tokenizer();
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  AddedVocabulary added_;
  std::vector<std::string> token_bytes_;  // per id
  std::vector<uint8_t> special_;          // per id
  int32_t vocab_size_ = 0;
  std::string chat_template_;
  std::shared_ptr<const ChatTemplate> parsed_template_;  // null if the template failed to parse
  std::string template_error_;                          // why it failed
  std::string bos_token_, eos_token_, pad_token_, unk_token_;
  std::optional<int32_t> bos_id_, eos_id_, pad_id_;
  bool add_bos_token_ = false;
  std::vector<int32_t> stop_ids_;
};

}  // namespace sparrow
