// Merging: words are short (a handful of bytes), so for them a linear scan for the best pair
// beats any heap. Long words (long digit or whitespace runs, base64, 100 KB of one letter) use
// a binary heap of candidate merges over a doubly linked list of symbols, O(n log n).
// Results are cached per thread keyed by the pre-token bytes: natural text repeats words a lot
// and a cache hit costs one hash lookup. The cache is thread_local so const use from many
// threads needs no lock.
#include "sparrow/tokenizer/bpe.h"

#include "sparrow/core/hash.h"

#include <atomic>
#include <queue>
#include <unordered_map>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/byte_level.h"
#include "sparrow/tokenizer/utf8.h"

namespace sparrow {

namespace {

std::atomic<uint64_t> g_next_uid{1};


struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Per-thread cache of word -> ids, one per model a thread uses (up to kCachesPerThread, the
// least recently switched-to one is recycled), keyed by the model's uid so a destroyed
// model's entries are never served to a new one.
struct WordCache {
  uint64_t owner = 0;
  uint64_t last_used = 0;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
};
constexpr size_t kCacheMaxEntries = 1 << 15;  // ~4 MB per thread and model at most
constexpr size_t kCacheMaxWordBytes = 64;
constexpr size_t kCachesPerThread = 4;

struct ThreadCaches {
  WordCache caches[kCachesPerThread];
  WordCache* current = nullptr;
  uint64_t clock = 0;
  WordCache& get(uint64_t uid) {
    if (current && current->owner == uid) return *current;
    WordCache* victim = &caches[0];
    for (auto& c : caches) {
      if (c.owner == uid) {
        victim = &c;
        break;
      }
      if (c.last_used < victim->last_used) victim = &c;
    }
    if (victim->owner != uid) {
      victim->map.clear();
      victim->owner = uid;
    }
    victim->last_used = ++clock;
    current = victim;
    return *victim;
  }
};

thread_local ThreadCaches t_caches;

}  // namespace

BpeModel::BpeModel(const nlohmann::json& model) : uid_(g_next_uid++) {
  SPARROW_REQUIRE(model.value("type", "") == "BPE", "tokenizer.json: model type '{}' is not supported (only BPE)",
                  model.value("type", std::string("?")));
  SPARROW_REQUIRE(model.value("dropout", nlohmann::json()).is_null(), "tokenizer.json: BPE dropout is not supported");
  SPARROW_REQUIRE(!model.value("byte_fallback", false), "tokenizer.json: BPE byte_fallback is not supported");
  SPARROW_REQUIRE(!model.value("ignore_merges", false), "tokenizer.json: BPE ignore_merges is not supported");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto v = model.value(k, nlohmann::json());
    SPARROW_REQUIRE(v.is_null() || v == "", "tokenizer.json: BPE {} is not supported", k);
  }
  const auto& vocab = model.at("vocab");
  vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = it.value().get<int32_t>();
    SPARROW_REQUIRE(id >= 0 && id < (1 << 28), "tokenizer.json: vocab id {} out of range", id);
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    id_to_token_[id] = it.key();
    vocab_.emplace(it.key(), id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8::append(ch, byte_level::byte_to_char(static_cast<unsigned char>(b)));
    auto it = vocab_.find(ch);
    SPARROW_REQUIRE(it != vocab_.end(), "tokenizer.json: byte-level vocab lacks the symbol for byte {}", b);
    byte_ids_[b] = it->second;
  }
  const auto& merges = model.at("merges");
  size_t cap = 16;
  while (cap < merges.size() * 2) cap <<= 1;
  merges_.assign(cap, MergeSlot{kEmpty, 0, 0});
  mask_ = cap - 1;
  int32_t rank = 0;
  for (const auto& m : merges) {
    // Merges are "a b" strings (older files) or ["a", "b"] pairs (newer files).
    std::string a, b;
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      auto sp = s.find(' ');
      SPARROW_REQUIRE(sp != std::string::npos, "tokenizer.json: malformed merge '{}'", s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      a = m.at(0).get<std::string>();
      b = m.at(1).get<std::string>();
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    SPARROW_REQUIRE(ia != vocab_.end() && ib != vocab_.end() && im != vocab_.end(),
                    "tokenizer.json: merge '{} {}' uses a token missing from the vocab", a, b);
    uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    for (uint64_t h = mix64(key) & mask_;; h = (h + 1) & mask_) {
      if (merges_[h].key == kEmpty) {
        merges_[h] = MergeSlot{key, rank, im->second};
        break;
      }
      if (merges_[h].key == key) break;  // duplicate merge: the first (lowest rank) wins
    }
    ++rank;
  }
}

const BpeModel::MergeSlot* BpeModel::find_merge(int32_t left, int32_t right) const {
  uint64_t key = (static_cast<uint64_t>(left) << 32) | static_cast<uint32_t>(right);
  for (uint64_t h = mix64(key) & mask_;; h = (h + 1) & mask_) {
    const MergeSlot& s = merges_[h];
    if (s.key == key) return &s;
    if (s.key == kEmpty) return nullptr;
  }
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string kEmptyString;
  return (id >= 0 && id < size()) ? id_to_token_[id] : kEmptyString;
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::merge_word(std::string_view bytes, std::vector<int32_t>& out) const {
  size_t n = bytes.size();
  if (n <= 48) {
    // Short word: repeatedly merge the lowest-rank adjacent pair (leftmost on ties).
    int32_t sym[48];
    for (size_t i = 0; i < n; ++i) sym[i] = byte_ids_[static_cast<unsigned char>(bytes[i])];
    while (n > 1) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      size_t best = 0;
      for (size_t i = 0; i + 1 < n; ++i) {
        const MergeSlot* m = find_merge(sym[i], sym[i + 1]);
        if (m && m->rank < best_rank) {
          best_rank = m->rank;
          best_id = m->merged;
          best = i;
        }
      }
      if (best_id < 0) break;
      sym[best] = best_id;
      for (size_t i = best + 1; i + 1 < n; ++i) sym[i] = sym[i + 1];
      --n;
    }
    out.insert(out.end(), sym, sym + n);
    return;
  }
  // Long word: heap of (rank, position) candidates over a linked list; stale entries are
  // detected by re-checking that the pair at that position still has the recorded ids.
  struct Sym {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
  };
  std::vector<Sym> s(n);
  for (size_t i = 0; i < n; ++i)
    s[i] = Sym{byte_ids_[static_cast<unsigned char>(bytes[i])], static_cast<int32_t>(i) - 1,
               i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
  struct Cand {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || s[pos].next < 0) return;
    if (const MergeSlot* m = find_merge(s[pos].id, s[s[pos].next].id))
      heap.push(Cand{m->rank, pos, s[pos].id, s[s[pos].next].id, m->merged});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& a = s[c.pos];
    if (a.id != c.left || a.next < 0 || s[a.next].id != c.right) continue;  // stale
    int32_t b = a.next;
    a.id = c.merged;
    a.next = s[b].next;
    if (a.next >= 0) s[a.next].prev = c.pos;
    s[b].id = -1;  // dead
    push(a.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = s[i].next) out.push_back(s[i].id);
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (bytes.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(bytes[0])]);
    return;
  }
  if (bytes.size() > kCacheMaxWordBytes) {
    merge_word(bytes, out);
    return;
  }
  WordCache& cache = t_caches.get(uid_);
  auto it = cache.map.find(bytes);
  if (it != cache.map.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  size_t start = out.size();
  merge_word(bytes, out);
  if (cache.map.size() >= kCacheMaxEntries) cache.map.clear();
  cache.map.emplace(std::string(bytes), std::vector<int32_t>(out.begin() + start, out.end()));
}

}  // namespace sparrow
