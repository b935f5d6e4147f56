// Paged KV memory. KVPool holds K and V for every layer as [slots, Hkv, D] (Hkv: the KV
// heads this rank stores); SlotAllocator hands out slot indices. They are separate because
// the attention-TP ranks of one DP group each hold their own KV heads but share one set of
// slot indices (one allocator per DP group). A request owns a row of the req_to_token
// table, mapping each of its positions to the slot holding that position's K/V, so
// sequences need not be contiguous and a shared prefix can point at the same slots.
#pragma once

#include <cstdint>
#include <vector>

#include "sparrow/core/arena.h"
#include "sparrow/core/tensor.h"

namespace sparrow {

class KVPool {
 public:
  // Host memory (zeroed).
  KVPool(int64_t num_layers, int64_t num_slots, int64_t kv_heads, int64_t head_dim, DType dtype);
  // Carved from `region` (the device KV region of a GPU rank); not initialized: attention
  // only reads slots a step has written.
  KVPool(int64_t num_layers, int64_t num_slots, int64_t kv_heads, int64_t head_dim, DType dtype, Arena& region);

  Tensor k(int64_t layer) const { return k_[size_t(layer)]; }
  Tensor v(int64_t layer) const { return v_[size_t(layer)]; }
  int64_t num_slots() const { return num_slots_; }
  size_t bytes_per_token() const;
  static size_t bytes_per_token(int64_t num_layers, int64_t kv_heads, int64_t head_dim, DType dtype) {
    return 2 * size_t(num_layers * kv_heads * head_dim) * dtype_size(dtype);
  }

 private:
  int64_t num_slots_;
  std::vector<Buffer> owned_;
  std::vector<Tensor> k_, v_;
};

class SlotAllocator {
 public:
  explicit SlotAllocator(int64_t num_slots);
  // Appends n slots to out; false (and nothing allocated) when fewer than n are free.
  bool alloc(int64_t n, std::vector<int32_t>& out);
  void free(const int32_t* slots, int64_t n);
  int64_t free_slots() const { return int64_t(free_list_.size()); }
  int64_t num_slots() const { return num_slots_; }

 private:
  int64_t num_slots_;
  std::vector<int32_t> free_list_;  // LIFO: recently freed slots are reused first (warm in cache)
};

class ReqToTokenPool {
 public:
  ReqToTokenPool(int32_t max_requests, int64_t max_context);

  // Returns a free request row, or -1 if all are taken.
  int32_t alloc();
  void free(int32_t slot);
  int32_t free_rows() const { return int32_t(free_.size()); }

  int32_t* row(int32_t slot) { return table_.data() + int64_t(slot) * max_context_; }
  const int32_t* table() const { return table_.data(); }
  int64_t max_context() const { return max_context_; }

 private:
  int64_t max_context_;
  std::vector<int32_t> table_;
  std::vector<int32_t> free_;
};

}  // namespace sparrow
