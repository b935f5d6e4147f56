#include "sparrow/engine/kv_pool.h"

namespace sparrow {

KVPool::KVPool(int64_t num_layers, int64_t num_slots, int64_t kv_heads, int64_t head_dim, DType dtype)
    : num_slots_(num_slots) {
  SPARROW_CHECK(num_slots > 0 && num_layers > 0, "KV pool of {} slots x {} layers", num_slots, num_layers);
  for (int64_t l = 0; l < 2 * num_layers; ++l) {
    owned_.emplace_back(dtype, Shape{num_slots, kv_heads, head_dim});
    (l % 2 ? v_ : k_).push_back(owned_.back().tensor());
  }
}

KVPool::KVPool(int64_t num_layers, int64_t num_slots, int64_t kv_heads, int64_t head_dim, DType dtype, Arena& region)
    : num_slots_(num_slots) {
  SPARROW_CHECK(num_slots > 0 && num_layers > 0, "KV pool of {} slots x {} layers", num_slots, num_layers);
  for (int64_t l = 0; l < num_layers; ++l) {
    k_.push_back(region.alloc(dtype, {num_slots, kv_heads, head_dim}));
    v_.push_back(region.alloc(dtype, {num_slots, kv_heads, head_dim}));
  }
}

size_t KVPool::bytes_per_token() const {
  return bytes_per_token(int64_t(k_.size()), k_[0].size(1), k_[0].size(2), k_[0].dtype());
}

SlotAllocator::SlotAllocator(int64_t num_slots) : num_slots_(num_slots) {
  free_list_.reserve(size_t(num_slots));
  for (int64_t s = num_slots - 1; s >= 0; --s) free_list_.push_back(int32_t(s));
}

bool SlotAllocator::alloc(int64_t n, std::vector<int32_t>& out) {
  if (n > int64_t(free_list_.size())) return false;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(free_list_.back());
    free_list_.pop_back();
  }
  return true;
}

void SlotAllocator::free(const int32_t* slots, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    SPARROW_CHECK(slots[i] >= 0 && slots[i] < num_slots_, "freeing KV slot {}", slots[i]);
    free_list_.push_back(slots[i]);
  }
  SPARROW_CHECK(int64_t(free_list_.size()) <= num_slots_, "KV slot double free");
}

ReqToTokenPool::ReqToTokenPool(int32_t max_requests, int64_t max_context)
    : max_context_(max_context), table_(size_t(int64_t(max_requests) * max_context), 0) {
  for (int32_t s = max_requests - 1; s >= 0; --s) free_.push_back(s);
}

int32_t ReqToTokenPool::alloc() {
  if (free_.empty()) return -1;
  const int32_t s = free_.back();
  free_.pop_back();
  return s;
}

void ReqToTokenPool::free(int32_t slot) { free_.push_back(slot); }

}  // namespace sparrow
