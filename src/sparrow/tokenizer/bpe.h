// Byte-level BPE model: a pre-token's bytes start as one symbol each and adjacent pairs are
// merged by rank (lowest rank first, leftmost first among equal ranks), as HF `tokenizers`
// does with dropout off and ignore_merges false.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sparrow {

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object (type BPE). Throws InputError on anything we do
  // not implement (dropout, unk/byte-fallback, word prefixes/suffixes, ignore_merges).
  explicit BpeModel(const nlohmann::json& model);

  // Appends the ids of one pre-token (raw bytes, not yet byte-level mapped) to `out`.
  // Uses a per-thread cache of recent pre-tokens, so concurrent const calls are safe.
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

  // Token string (as in the vocab, byte-level form) for an id; empty if unknown.
  const std::string& id_to_token(int32_t id) const;
  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct MergeSlot {
    uint64_t key;      // (left id << 32) | right id; kEmpty when unused
    int32_t rank;
    int32_t merged;
  };
  static constexpr uint64_t kEmpty = ~0ull;
  const MergeSlot* find_merge(int32_t left, int32_t right) const;
  void merge_word(std::string_view bytes, std::vector<int32_t>& out) const;

  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int32_t> vocab_;
  int32_t byte_ids_[256];
  std::vector<MergeSlot> merges_;  // open addressing, power-of-two size
  uint64_t mask_ = 0;
  uint64_t uid_;                   // identifies this model in the per-thread caches
};

}  // namespace sparrow
