// RadixCache: a radix tree over token ids whose edges carry the KV slots of those tokens,
// so a request whose prompt starts with a cached sequence reuses that KV instead of
// recomputing it. Nodes on the path of a running request are locked (reference counted)
// and never evicted; unlocked leaves are evicted least-recently-used first, their slots
// going back to the KV pool.
//
// Lifecycle with the scheduler: match_prefix() at admission, lock() the returned node;
// insert() the request's tokens when it finishes (or after a prefill chunk), which hands
// duplicate slots back to the pool, then unlock() the old node.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "sparrow/engine/kv_pool.h"

namespace sparrow {

class RadixCache {
 public:
  struct Node;

  explicit RadixCache(SlotAllocator& pool);
  ~RadixCache();

  struct Match {
    std::vector<int32_t> slots;  // KV slots of the matched prefix, one per token
    Node* node = nullptr;        // deepest node fully covered by the match (root if none)
  };
  // The longest cached prefix of `tokens`. A match that ends inside an edge splits it, so
  // the returned node covers exactly the matched tokens.
  Match match_prefix(std::span<const int32_t> tokens);

  // Records `tokens` with their KV `slots` (same length). Slots of a prefix that is already
  // cached are duplicates: they are freed to the pool and the cached ones kept. Returns the
  // node ending at the last token, and in `cached_slots` (if given) the slots now cached for
  // every token (the caller's req_to_token row should point at these).
  Node* insert(std::span<const int32_t> tokens, std::span<const int32_t> slots,
               std::vector<int32_t>* cached_slots = nullptr);

  // Reference counts along the path from `node` to the root.
  void lock(Node* node);
  void unlock(Node* node);

  // Frees at least `num_tokens` slots by evicting unlocked leaves, oldest access first.
  // Returns the number freed (less when not enough is evictable).
  int64_t evict(int64_t num_tokens);

  int64_t evictable_size() const { return evictable_; }  // cached tokens not locked
  int64_t protected_size() const { return protected_; }  // cached tokens locked by requests
  int64_t total_size() const { return evictable_ + protected_; }
  Node* root() const { return root_.get(); }

  // Drops every cached token (all nodes must be unlocked); their slots go back to the pool.
  void reset();

 private:
  Node* split(Node* node, size_t at);
  void free_subtree(Node* node);

  SlotAllocator& pool_;
  std::unique_ptr<Node> root_;
  int64_t evictable_ = 0, protected_ = 0;
  uint64_t clock_ = 0;
};

struct RadixCache::Node {
  std::vector<int32_t> tokens;  // edge label from the parent
  std::vector<int32_t> slots;   // KV slot per token of the edge
  std::map<int32_t, std::unique_ptr<Node>> children;  // keyed by first token
  Node* parent = nullptr;
  int32_t lock_ref = 0;
  uint64_t last_access = 0;
};

}  // namespace sparrow
