#include "sparrow/engine/radix_cache.h"

#include <algorithm>
#include <queue>

#include "sparrow/core/error.h"

namespace sparrow {

RadixCache::RadixCache(SlotAllocator& pool) : pool_(pool), root_(std::make_unique<Node>()) {
  root_->lock_ref = 1;  // the root is never evicted
}

RadixCache::~RadixCache() = default;

RadixCache::Node* RadixCache::split(Node* node, size_t at) {
  // node's edge [0, at) stays in a new middle node; node keeps [at, end) below it.
  auto mid = std::make_unique<Node>();
  mid->tokens.assign(node->tokens.begin(), node->tokens.begin() + long(at));
  mid->slots.assign(node->slots.begin(), node->slots.begin() + long(at));
  mid->parent = node->parent;
  mid->lock_ref = node->lock_ref;
  mid->last_access = node->last_access;
  Node* parent = node->parent;
  std::unique_ptr<Node> self = std::move(parent->children[node->tokens[0]]);
  node->tokens.erase(node->tokens.begin(), node->tokens.begin() + long(at));
  node->slots.erase(node->slots.begin(), node->slots.begin() + long(at));
  node->parent = mid.get();
  Node* m = mid.get();
  m->children[node->tokens[0]] = std::move(self);
  parent->children[m->tokens[0]] = std::move(mid);
  return m;
}

RadixCache::Match RadixCache::match_prefix(std::span<const int32_t> tokens) {
  Match m;
  Node* node = root_.get();
  node->last_access = ++clock_;
  size_t i = 0;
  while (i < tokens.size()) {
    auto it = node->children.find(tokens[i]);
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    size_t n = 0;
    while (n < child->tokens.size() && i + n < tokens.size() && child->tokens[n] == tokens[i + n]) ++n;
    if (n < child->tokens.size()) child = split(child, n);
    child->last_access = ++clock_;
    m.slots.insert(m.slots.end(), child->slots.begin(), child->slots.end());
    i += n;
    node = child;
    if (n == 0) break;
  }
  m.node = node;
  return m;
}

RadixCache::Node* RadixCache::insert(std::span<const int32_t> tokens, std::span<const int32_t> slots,
                                     std::vector<int32_t>* cached_slots) {
  SPARROW_CHECK(tokens.size() == slots.size(), "radix insert: {} tokens, {} slots", tokens.size(), slots.size());
  if (cached_slots) cached_slots->clear();
  Node* node = root_.get();
  size_t i = 0;
  while (i < tokens.size()) {
    auto it = node->children.find(tokens[i]);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->tokens.assign(tokens.begin() + long(i), tokens.end());
      leaf->slots.assign(slots.begin() + long(i), slots.end());
      leaf->parent = node;
      leaf->last_access = ++clock_;
      evictable_ += int64_t(leaf->tokens.size());
      if (cached_slots) cached_slots->insert(cached_slots->end(), leaf->slots.begin(), leaf->slots.end());
      Node* l = leaf.get();
      node->children[tokens[i]] = std::move(leaf);
      return l;
    }
    Node* child = it->second.get();
    size_t n = 0;
    while (n < child->tokens.size() && i + n < tokens.size() && child->tokens[n] == tokens[i + n]) ++n;
    if (n < child->tokens.size()) child = split(child, n);
    // These tokens are cached already: the caller's slots for them are duplicates.
    for (size_t j = 0; j < n; ++j)
      if (slots[i + j] != child->slots[j]) pool_.free(&slots[i + j], 1);
    if (cached_slots) cached_slots->insert(cached_slots->end(), child->slots.begin(), child->slots.end());
    child->last_access = ++clock_;
    i += n;
    node = child;
  }
  return node;
}

void RadixCache::lock(Node* node) {
  for (; node && node != root_.get(); node = node->parent) {
    if (node->lock_ref++ == 0) {
      evictable_ -= int64_t(node->tokens.size());
      protected_ += int64_t(node->tokens.size());
    }
  }
}

void RadixCache::unlock(Node* node) {
  for (; node && node != root_.get(); node = node->parent) {
    SPARROW_CHECK(node->lock_ref > 0, "radix unlock of an unlocked node");
    if (--node->lock_ref == 0) {
      evictable_ += int64_t(node->tokens.size());
      protected_ -= int64_t(node->tokens.size());
    }
  }
}

int64_t RadixCache::evict(int64_t num_tokens) {
  // Min-heap of evictable leaves by last access; a parent whose last child goes becomes a
  // candidate in turn.
  auto older = [](const Node* a, const Node* b) { return a->last_access > b->last_access; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(older)> heap(older);
  std::vector<Node*> stack = {root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n->children.empty() && n != root_.get() && n->lock_ref == 0) heap.push(n);
    for (auto& [_, c] : n->children) stack.push_back(c.get());
  }
  int64_t freed = 0;
  while (freed < num_tokens && !heap.empty()) {
    Node* leaf = heap.top();
    heap.pop();
    pool_.free(leaf->slots.data(), int64_t(leaf->slots.size()));
    freed += int64_t(leaf->slots.size());
    evictable_ -= int64_t(leaf->slots.size());
    Node* parent = leaf->parent;
    parent->children.erase(leaf->tokens[0]);
    if (parent != root_.get() && parent->children.empty() && parent->lock_ref == 0) heap.push(parent);
  }
  return freed;
}

void RadixCache::free_subtree(Node* node) {
  for (auto& [_, c] : node->children) free_subtree(c.get());
  if (node != root_.get()) pool_.free(node->slots.data(), int64_t(node->slots.size()));
}

void RadixCache::reset() {
  SPARROW_CHECK(protected_ == 0, "radix reset while {} cached tokens are locked", protected_);
  free_subtree(root_.get());
  root_->children.clear();
  evictable_ = 0;
}

}  // namespace sparrow
