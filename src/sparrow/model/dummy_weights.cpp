// --load-format dummy: seeded random weights made on first request, no files.
//
// Element i of tensor `name` is a pure function of (seed, name, i): a counter-based
// generator (splitmix64's finalizer over key + (i / 2) * golden ratio, each 64-bit hash
// giving two 24-bit uniforms), so the values never depend on thread count, chunking or
// the order in which tensors are requested. The fill runs on ThreadPool::global().
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "sparrow/core/error.h"
#include "sparrow/core/thread_pool.h"
#include "sparrow/model/weight_source.h"
#include "sparrow/core/hash.h"

namespace sparrow {
namespace {

constexpr uint64_t kGolden = kGolden64;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline float uniform(uint32_t r) {  // 24 high bits -> (-1, 1)
  return (float(r >> 8) + 0.5f) * (2.0f / 16777216.0f) - 1.0f;
}

// Fills [b, e) of dst with center + scale * U(-1, 1), computed in fp32 then rounded to dtype.
// Element i takes half (i & 1) of hash(key, i / 2); one hash serves a pair.
void fill_range(void* dst, DType dtype, uint64_t key, float center, float scale, int64_t b,
                int64_t e) {
  constexpr int64_t kBlock = 2048;
  float tmp[kBlock];
  const size_t esize = dtype_size(dtype);
  auto value = [&](uint64_t i) {
    const uint64_t h = mix64(key + (i >> 1) * kGolden);
    return center + scale * uniform((i & 1) ? uint32_t(h >> 32) : uint32_t(h));
  };
  for (int64_t s = b; s < e; s += kBlock) {
    const int64_t n = std::min(kBlock, e - s);
    int64_t k = 0;
    if (s & 1) tmp[k++] = value(uint64_t(s));
    for (; k + 1 < n; k += 2) {
      const uint64_t h = mix64(key + (uint64_t(s + k) >> 1) * kGolden);
      tmp[k] = center + scale * uniform(uint32_t(h));
      tmp[k + 1] = center + scale * uniform(uint32_t(h >> 32));
    }
    if (k < n) tmp[k] = value(uint64_t(s + k));
    char* out = static_cast<char*>(dst) + size_t(s) * esize;
    if (dtype == DType::kBF16) {
      auto* o = reinterpret_cast<uint16_t*>(out);
      for (int64_t j = 0; j < n; ++j) o[j] = f32_to_bf16(tmp[j]);
    } else {
      convert(tmp, DType::kF32, out, dtype, size_t(n));
    }
  }
}

// Host memory for a dummy tensor, not zeroed (the fill writes every byte). Transparent
// huge pages were tried and were slower here (compaction stalls in the kernel).
void* alloc_uninit(size_t nbytes) {
  return std::aligned_alloc(64, std::max<size_t>(64, (nbytes + 63) / 64 * 64));
}

class DummyWeights : public WeightSource {
 public:
  DummyWeights(uint64_t seed, DType dtype) : seed_(seed), dtype_(dtype) {
    SPARROW_REQUIRE(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16 ||
                        dtype == DType::kF8E4M3,
                    "dummy weights need a float dtype, got {}", dtype_name(dtype));
  }

  bool has(const std::string& name) const override { return true; }

  Tensor get(const std::string& name, const Shape& shape) const override {
    for (int i = 0; i < shape.rank; ++i)
      SPARROW_REQUIRE(shape[i] >= 0, "dummy tensor \"{}\": negative dim in shape {}", name,
                      shape.str());
    Entry* e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& slot = entries_[name];
      if (!slot) {
        slot = std::make_unique<Entry>();
        slot->shape = shape;
      }
      e = slot.get();
    }
    SPARROW_REQUIRE(e->shape == shape,
                    "dummy tensor \"{}\" requested with shape {}, but earlier with {}", name,
                    shape.str(), e->shape.str());
    // Generate outside the map lock; concurrent requests for this name wait here.
    std::call_once(e->once, [&] { generate(name, *e); });
    return e->tensor;
  }

  std::vector<std::string> names() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [name, e] : entries_) out.push_back(name);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  struct Entry {
    Shape shape;
    std::once_flag once;
    std::unique_ptr<void, Free> mem;  // not zeroed: every byte is written by the fill
    Tensor tensor;
  };

  void generate(const std::string& name, Entry& e) const {
    const int64_t n = e.shape.numel();
    const size_t nbytes = size_t(n) * dtype_size(dtype_);
    void* p = alloc_uninit(nbytes);
    if (!p) throw_error("out of host memory making dummy tensor \"{}\" ({} bytes)", name, nbytes);
    e.mem.reset(p);

    float center = 0.f, scale;
    if (ends_with(name, "norm.weight")) {
      center = 1.f;
      scale = 0.05f;
    } else if (ends_with(name, "bias")) {
      scale = 0.02f;
    } else if (ends_with(name, "embed_tokens.weight")) {
      // Unit-range embeddings keep each token's own signal dominant in the residual stream.
      // With the fan-in scale (RMS 0.013) the random attention's sequence-wide average took
      // over from the second layer on and a prompt's tokens all routed to the same ~20-40
      // experts of 128 (docs/gpu.md): prefill read a fraction of a real model's experts.
      scale = 1.f;
    } else {
      const int64_t fan_in = e.shape.rank ? e.shape[e.shape.rank - 1] : 1;
      scale = 1.f / std::sqrt(float(std::max<int64_t>(fan_in, 1)));
    }
    const uint64_t key = mix64(fnv1a(name) ^ mix64(seed_ + kGolden));
    ThreadPool::global().parallel_for(
        n, [&](int64_t b, int64_t end) { fill_range(p, dtype_, key, center, scale, b, end); },
        /*grain=*/1 << 16);
    e.tensor = Tensor(p, dtype_, e.shape);
  }

  uint64_t seed_;
  DType dtype_;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
};

}  // namespace

std::unique_ptr<WeightSource> make_dummy_weights(uint64_t seed, DType dtype) {
  return std::make_unique<DummyWeights>(seed, dtype);
}

}  // namespace sparrow
