// Safetensors files and checkpoints, memory-mapped (read-only, MAP_PRIVATE): a tensor is a
// zero-copy view into the mapping, so loading never needs a second copy of the model in
// RAM. Every header is validated at open; any defect is an InputError naming the file
// and, where one is involved, the tensor. See docs/loading.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sparrow/core/tensor.h"
#include "sparrow/model/weight_source.h"

namespace sparrow {

// One tensor's header entry.
struct SafetensorsEntry {
  std::string dtype_name;      // as stored: "BF16", "F64", ...
  std::optional<DType> dtype;  // empty: a valid safetensors dtype Sparrow cannot use (F64, U8, BOOL...)
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

// Header limit: real headers are a few MB even for 100k-tensor files.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws InputError naming the file (and tensor) on any defect.
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted

  // Zero-copy view of `name` in its stored dtype and shape (an aligned private copy in the
  // rare case the stored bytes are misaligned for the dtype). Throws InputError when the
  // tensor is missing or its dtype is one Sparrow cannot use.
  Tensor view(const std::string& name) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, SafetensorsEntry> entries_;
  mutable std::mutex copies_mu_;
  mutable std::map<std::string, Buffer> copies_;  // misaligned tensors only
};

// A checkpoint directory: DIR/model.safetensors, or the shards named by the weight_map of
// DIR/model.safetensors.index.json (every listed tensor must be in its shard; a tensor in
// two shards is an error). Thread-safe.
class SafetensorsCheckpoint : public WeightSource {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir);

  bool has(const std::string& name) const override;
  Tensor get(const std::string& name, const Shape& shape) const override;
  std::vector<std::string> names() const override;
  std::vector<std::string> unused_names() const override;

  const std::string& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // The entry and file holding `name`, or {nullptr, nullptr}.
  std::pair<const SafetensorsEntry*, const SafetensorsFile*> find(const std::string& name) const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, const SafetensorsFile*> where_;
  mutable std::mutex used_mu_;
  mutable std::unordered_set<std::string> used_;
};

// Bits per element of a safetensors dtype string (F4 = 4, BF16 = 16, ...); 0 if unknown.
int safetensors_dtype_bits(const std::string& name);
// Sparrow's DType for a safetensors dtype string, if Sparrow computes in it.
std::optional<DType> safetensors_dtype(const std::string& name);

}  // namespace sparrow
