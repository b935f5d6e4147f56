// One safetensors file: mmap + header validation. Layout (huggingface/safetensors):
//   [u64 little-endian N][N bytes of JSON header][data section]
// header: {"__metadata__": {str: str}, NAME: {"dtype": D, "shape": [..], "data_offsets": [b, e]}}
// with offsets relative to the data section. Every check below runs before any tensor
// byte is read, and every read of the mapping stays inside [0, file size).
#include "sparrow/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "sparrow/core/error.h"

namespace sparrow {

int safetensors_dtype_bits(const std::string& n) {
  static const std::unordered_map<std::string, int> kBits = {
      {"BOOL", 8},     {"U8", 8},       {"I8", 8},       {"F8_E5M2", 8}, {"F8_E4M3", 8},
      {"F8_E8M0", 8},  {"I16", 16},     {"U16", 16},     {"F16", 16},    {"BF16", 16},
      {"I32", 32},     {"U32", 32},     {"F32", 32},     {"F64", 64},    {"I64", 64},
      {"U64", 64},     {"C64", 64},     {"F4", 4},       {"F6_E2M3", 6}, {"F6_E3M2", 6}};
  auto it = kBits.find(n);
  return it == kBits.end() ? 0 : it->second;
}

std::optional<DType> safetensors_dtype(const std::string& n) {
  if (n == "BF16") return DType::kBF16;
  if (n == "F16") return DType::kF16;
  if (n == "F32") return DType::kF32;
  if (n == "F8_E4M3") return DType::kF8E4M3;
  if (n == "I32") return DType::kI32;
  if (n == "I64") return DType::kI64;
  return std::nullopt;
}

namespace {

using json = nlohmann::json;

// Parses one header entry; `file` and `name` are for messages.
SafetensorsEntry parse_entry(const json& v, const std::string& file, const std::string& name,
                             uint64_t data_size) {
  SafetensorsEntry e;
  SPARROW_REQUIRE(v.is_object(), "{}: tensor \"{}\": header entry is not an object", file, name);
  auto dt = v.find("dtype");
  SPARROW_REQUIRE(dt != v.end() && dt->is_string(), "{}: tensor \"{}\": missing or non-string dtype",
                  file, name);
  e.dtype_name = dt->get<std::string>();
  const int bits = safetensors_dtype_bits(e.dtype_name);
  SPARROW_REQUIRE(bits > 0, "{}: tensor \"{}\": unknown dtype \"{}\"", file, name, e.dtype_name);
  e.dtype = safetensors_dtype(e.dtype_name);

  auto sh = v.find("shape");
  SPARROW_REQUIRE(sh != v.end() && sh->is_array(), "{}: tensor \"{}\": missing or non-list shape",
                  file, name);
  SPARROW_REQUIRE(sh->size() <= size_t(kMaxDims), "{}: tensor \"{}\": rank {} exceeds {}", file,
                  name, sh->size(), kMaxDims);
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *sh) {
    SPARROW_REQUIRE(d.is_number_integer(), "{}: tensor \"{}\": shape {} has a non-integer dim",
                    file, name, sh->dump());
    SPARROW_REQUIRE(d.is_number_unsigned(), "{}: tensor \"{}\": shape {} has a negative dim", file,
                    name, sh->dump());
    const uint64_t x = d.get<uint64_t>();
    SPARROW_REQUIRE(x <= (uint64_t(1) << 48), "{}: tensor \"{}\": shape {} has an absurd dim", file,
                    name, sh->dump());
    overflow |= __builtin_mul_overflow(numel, x, &numel);
    e.shape.dims[size_t(e.shape.rank++)] = int64_t(x);
  }
  SPARROW_REQUIRE(!overflow && numel <= (uint64_t(1) << 60), "{}: tensor \"{}\": shape {} is too large",
                  file, name, sh->dump());

  auto off = v.find("data_offsets");
  SPARROW_REQUIRE(off != v.end() && off->is_array() && off->size() == 2 &&
                      (*off)[0].is_number_unsigned() && (*off)[1].is_number_unsigned(),
                  "{}: tensor \"{}\": data_offsets must be [begin, end] non-negative integers, got {}",
                  file, name, off == v.end() ? std::string("nothing") : off->dump());
  e.begin = (*off)[0].get<uint64_t>();
  e.end = (*off)[1].get<uint64_t>();
  SPARROW_REQUIRE(e.begin <= e.end, "{}: tensor \"{}\": data_offsets begin {} > end {}", file, name,
                  e.begin, e.end);
  SPARROW_REQUIRE(e.end <= data_size,
                  "{}: tensor \"{}\": data_offsets end {} is past the data section ({} bytes)", file,
                  name, e.end, data_size);
  const uint64_t nbytes = (numel * uint64_t(bits) + 7) / 8;  // numel <= 2^60, bits <= 64: no overflow
  SPARROW_REQUIRE(e.end - e.begin == nbytes,
                  "{}: tensor \"{}\": {} bytes stored, but {} {} needs {}", file, name,
                  e.end - e.begin, e.dtype_name, e.shape.str(), nbytes);
  return e;
}

}  // namespace

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  SPARROW_REQUIRE(fd >= 0, "cannot open {}: {}", path_, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_input_error("{}: not a regular file", path_);
  }
  size_ = size_t(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw_input_error("{}: truncated: {} bytes, shorter than the 8-byte header length", path_,
                      size_);
  }
  map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw_input_error("{}: mmap failed: {}", path_, std::strerror(map_errno));
  }
  // From here on, failures must unmap: the destructor does not run for a throwing ctor.
  try {
    const auto* bytes = static_cast<const uint8_t*>(map_);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian
    SPARROW_REQUIRE(n <= kMaxSafetensorsHeaderBytes,
                    "{}: header length {} is absurd (limit {} bytes); not a safetensors file?",
                    path_, n, kMaxSafetensorsHeaderBytes);
    SPARROW_REQUIRE(8 + n <= size_, "{}: header length {} runs past the end of the file ({} bytes)",
                    path_, n, size_);
    const char* h = reinterpret_cast<const char*>(bytes + 8);
    json header = json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
    SPARROW_REQUIRE(!header.is_discarded(), "{}: header is not valid JSON", path_);
    SPARROW_REQUIRE(header.is_object(), "{}: header is not a JSON object", path_);
    data_ = bytes + 8 + n;
    const uint64_t data_size = size_ - 8 - n;

    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        SPARROW_REQUIRE(it->is_object(), "{}: __metadata__ is not an object", path_);
        continue;
      }
      entries_.emplace(it.key(), parse_entry(*it, path_, it.key(), data_size));
    }
    // No two tensors may share bytes (empty tensors occupy none).
    std::vector<std::pair<const std::string*, const SafetensorsEntry*>> order;
    for (const auto& [name, e] : entries_)
      if (e.end > e.begin) order.emplace_back(&name, &e);
    std::sort(order.begin(), order.end(),
              [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
    for (size_t i = 1; i < order.size(); ++i)
      SPARROW_REQUIRE(order[i].second->begin >= order[i - 1].second->end,
                      "{}: tensors \"{}\" [{}, {}) and \"{}\" [{}, {}) overlap", path_,
                      *order[i - 1].first, order[i - 1].second->begin, order[i - 1].second->end,
                      *order[i].first, order[i].second->begin, order[i].second->end);
  } catch (...) {
    ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

Tensor SafetensorsFile::view(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  SPARROW_REQUIRE(e, "{}: no tensor \"{}\"", path_, name);
  SPARROW_REQUIRE(e->dtype.has_value(),
                  "{}: tensor \"{}\" has dtype {}, which Sparrow does not support (supported: "
                  "BF16, F16, F32, F8_E4M3, I32, I64)",
                  path_, name, e->dtype_name);
  const uint8_t* p = data_ + e->begin;
  const size_t nbytes = size_t(e->end - e->begin);
  if (nbytes == 0) return Tensor(const_cast<uint8_t*>(p), *e->dtype, e->shape);
  // Start reading the pages the caller is about to touch (range rounded out to pages).
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = uintptr_t(p) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(lo), uintptr_t(p) + nbytes - lo, MADV_WILLNEED);
  if (uintptr_t(p) % dtype_size(*e->dtype) == 0)
    return Tensor(const_cast<uint8_t*>(p), *e->dtype, e->shape);
  std::lock_guard<std::mutex> lock(copies_mu_);
  auto it = copies_.find(name);
  if (it == copies_.end()) {
    Buffer b(*e->dtype, e->shape);
    std::memcpy(b.data(), p, nbytes);
    it = copies_.emplace(name, std::move(b)).first;
  }
  return it->second.tensor();
}

}  // namespace sparrow
