// Safetensors reader: files written by the reference `safetensors` package
// (tests/testdata/safetensors, from python/make_safetensors_fixtures.py), files written
// here, and a catalogue of corrupt files that must each fail with an InputError naming
// the file and the tensor, without reading out of bounds (run under SPARROW_ASAN too).
#include "sparrow/model/safetensors.h"

#include <gtest/gtest.h>

#include "../common/expect_input_error.h"
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
const std::string kFixtures = std::string(SPARROW_TESTDATA_DIR) + "/safetensors/";

using sparrow::test::input_error;

#define EXPECT_CONTAINS(msg, part) \
  EXPECT_NE(std::string(msg).find(part), std::string::npos) << "\"" << (msg) << "\" lacks \"" << (part) << "\""

// A fresh empty directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / (std::string("sparrow_st_") + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// [len][header][data]; header_len overrides the length field.
std::string raw_file(const std::string& header, const std::string& data,
                     std::optional<uint64_t> header_len = std::nullopt) {
  return u64le(header_len.value_or(header.size())) + header + data;
}

// A valid file: F32 tensors laid out back to back, values i * 0.25 + k.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::string valid_file(const std::vector<TensorSpec>& specs, size_t pad_header_to = 8) {
  json h = json::object();
  std::string data;
  int k = 0;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    const size_t begin = data.size();
    for (int64_t i = 0; i < n; ++i) {
      const float v = float(i) * 0.25f + float(k);
      data.append(reinterpret_cast<const char*>(&v), 4);
    }
    h[s.name] = {{"dtype", "F32"}, {"shape", s.shape}, {"data_offsets", {begin, data.size()}}};
    ++k;
  }
  std::string header = h.dump();
  while (header.size() % pad_header_to) header += ' ';
  return raw_file(header, data);
}

// ---- files written by the reference implementation ----

void check_fixture_values(const WeightSource& w) {
  Tensor e = w.get("model.embed_tokens.weight", {3, 4});
  EXPECT_EQ(e.dtype(), DType::kBF16);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(load_as_f32(e.data(), e.dtype(), size_t(i)), 0.5f * float(i));
  Tensor n = w.get("model.norm.weight", {4});
  EXPECT_EQ(n.dtype(), DType::kF32);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(n.data_as<float>()[i], float(i + 1));
  Tensor q = w.get("model.layers.0.self_attn.q_proj.weight", {2, 4});
  EXPECT_EQ(q.dtype(), DType::kF16);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(load_as_f32(q.data(), q.dtype(), size_t(i)), float(i - 4));
  Tensor b = w.get("model.layers.0.self_attn.q_proj.bias", {2});
  EXPECT_EQ(b.dtype(), DType::kI64);
  EXPECT_EQ(b.data_as<int64_t>()[0], 7);
  EXPECT_EQ(b.data_as<int64_t>()[1], -7);
  Tensor g = w.get("model.layers.0.mlp.experts.gate_up_proj", {2, 3, 2});
  EXPECT_EQ(g.dtype(), DType::kI32);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(g.data_as<int32_t>()[i], i);
}

TEST(Safetensors, ReadsReferenceSingleFile) {
  SafetensorsCheckpoint ck(kFixtures + "single");
  EXPECT_EQ(ck.names().size(), 6u);
  EXPECT_TRUE(ck.has("model.norm.weight"));
  EXPECT_FALSE(ck.has("model.nope"));
  check_fixture_values(ck);
  EXPECT_EQ(ck.unused_names(), std::vector<std::string>{"model.layers.0.extra.f64"});
  // Zero-copy: the same bytes every time.
  EXPECT_EQ(ck.get("model.norm.weight", {4}).data(), ck.get("model.norm.weight", {4}).data());
}

TEST(Safetensors, ReadsReferenceShardedCheckpoint) {
  auto w = open_safetensors_checkpoint(kFixtures + "sharded");
  auto& ck = static_cast<SafetensorsCheckpoint&>(*w);
  EXPECT_EQ(ck.files().size(), 2u);
  EXPECT_EQ(ck.names(), SafetensorsCheckpoint(kFixtures + "single").names());
  check_fixture_values(ck);
  auto [entry, file] = ck.find("model.norm.weight");
  ASSERT_TRUE(entry);
  EXPECT_CONTAINS(file->path(), "model-00002-of-00002.safetensors");
}

TEST(Safetensors, UnsupportedDtypeFailsOnlyWhenRequested) {
  SafetensorsCheckpoint ck(kFixtures + "single");
  auto [e, f] = ck.find("model.layers.0.extra.f64");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->dtype_name, "F64");
  EXPECT_FALSE(e->dtype.has_value());
  const std::string msg = input_error([&] { ck.get("model.layers.0.extra.f64", {2}); });
  EXPECT_CONTAINS(msg, "F64");
  EXPECT_CONTAINS(msg, "model.layers.0.extra.f64");
  EXPECT_CONTAINS(msg, "model.safetensors");
}

TEST(Safetensors, MissingTensorAndShapeMismatch) {
  const std::string dir = kFixtures + "single";
  SafetensorsCheckpoint ck(dir);
  std::string msg = input_error([&] { ck.get("lm_head.weight", {3, 4}); });
  EXPECT_CONTAINS(msg, "missing tensor \"lm_head.weight\" in checkpoint");
  EXPECT_CONTAINS(msg, dir);
  msg = input_error([&] { ck.get("model.embed_tokens.weight", {4, 3}); });
  EXPECT_CONTAINS(msg, "model.embed_tokens.weight");
  EXPECT_CONTAINS(msg, "expected shape [4, 3], stored [3, 4]");
  EXPECT_CONTAINS(msg, "model.safetensors");
}

// ---- files written here ----

TEST(Safetensors, WrittenFileViewsAreZeroCopyAndContiguous) {
  TempDir d;
  write_bytes(d.file("model.safetensors"), valid_file({{"a", {2, 3}}, {"b", {5}}, {"empty", {0, 4}}}));
  SafetensorsFile f(d.file("model.safetensors"));
  Tensor a = f.view("a"), b = f.view("b"), e = f.view("empty");
  EXPECT_EQ(static_cast<char*>(b.data()) - static_cast<char*>(a.data()), 24);
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.data_as<float>()[5], 1.25f);
  EXPECT_EQ(b.data_as<float>()[4], 2.f);
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "empty"}));
}

TEST(Safetensors, MisalignedTensorIsCopiedAligned) {
  TempDir d;
  // Header padded to 3 bytes: data starts at offset 11, so every F32 is misaligned.
  std::string bytes = valid_file({{"a", {4}}}, 1);
  std::string header = bytes.substr(8, bytes.size() - 8 - 16);
  while ((8 + header.size()) % 4 != 3) header += ' ';
  write_bytes(d.file("m.safetensors"), raw_file(header, bytes.substr(bytes.size() - 16)));
  SafetensorsFile f(d.file("m.safetensors"));
  Tensor a = f.view("a");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 4, 0u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.data_as<float>()[i], 0.25f * float(i));
  EXPECT_EQ(f.view("a").data(), a.data());  // cached
}

struct Corrupt {
  const char* what;
  std::string bytes;
  std::vector<std::string> expect;  // substrings of the message, besides the file name
};

std::vector<Corrupt> corrupt_catalogue() {
  const std::string ok_data(16, '\0');
  auto hdr = [](json entry, const char* name = "w") {
    json h = json::object();
    h[name] = std::move(entry);
    return h.dump();
  };
  auto entry = [](json dtype, json shape, json offsets) {
    return json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", offsets}};
  };
  std::vector<Corrupt> c;
  c.push_back({"empty file", "", {"truncated"}});
  c.push_back({"truncated length", std::string("\x10\x00\x00", 3), {"truncated"}});
  c.push_back({"header length past EOF", raw_file("{}", "", 1000), {"past the end"}});
  c.push_back({"absurd header length", raw_file("{}", "", uint64_t(1) << 40), {"absurd"}});
  c.push_back({"max header length", raw_file("{}", "", ~uint64_t(0)), {"absurd"}});
  c.push_back({"bad json", raw_file("{\"w\": {\"dtype\": ", ok_data), {"not valid JSON"}});
  c.push_back({"binary header", raw_file(std::string("\xff\xfe\x00\x01", 4), ok_data), {"not valid JSON"}});
  c.push_back({"header not object", raw_file("[1, 2]", ok_data), {"not a JSON object"}});
  c.push_back({"entry not object", raw_file(hdr(3), ok_data), {"\"w\"", "not an object"}});
  c.push_back({"metadata not object", raw_file(R"({"__metadata__": 3})", ok_data), {"__metadata__"}});
  c.push_back({"missing dtype", raw_file(hdr({{"shape", {4}}, {"data_offsets", {0, 16}}}), ok_data), {"\"w\"", "dtype"}});
  c.push_back({"missing shape", raw_file(hdr({{"dtype", "F32"}, {"data_offsets", {0, 16}}}), ok_data), {"\"w\"", "shape"}});
  c.push_back({"missing offsets", raw_file(hdr({{"dtype", "F32"}, {"shape", {4}}}), ok_data), {"\"w\"", "data_offsets"}});
  c.push_back({"unknown dtype", raw_file(hdr(entry("Q7", {4}, {0, 16})), ok_data), {"\"w\"", "unknown dtype \"Q7\""}});
  c.push_back({"dtype not string", raw_file(hdr(entry(5, {4}, {0, 16})), ok_data), {"\"w\"", "dtype"}});
  c.push_back({"negative dim", raw_file(hdr(entry("F32", {-4}, {0, 16})), ok_data), {"\"w\"", "negative"}});
  c.push_back({"float dim", raw_file(hdr(entry("F32", {4.0}, {0, 16})), ok_data), {"\"w\"", "non-integer"}});
  c.push_back({"rank 5", raw_file(hdr(entry("F32", {1, 1, 1, 1, 4}, {0, 16})), ok_data), {"\"w\"", "rank 5"}});
  c.push_back({"numel overflow", raw_file(hdr(entry("F32", {uint64_t(1) << 40, uint64_t(1) << 40}, {0, 16})), ok_data), {"\"w\""}});
  c.push_back({"offsets 3 values", raw_file(hdr(entry("F32", {4}, {0, 8, 16})), ok_data), {"\"w\"", "data_offsets"}});
  c.push_back({"offsets negative", raw_file(hdr(entry("F32", {4}, {-16, 0})), ok_data), {"\"w\"", "data_offsets"}});
  c.push_back({"offsets float", raw_file(hdr(entry("F32", {4}, {0.0, 16.0})), ok_data), {"\"w\"", "data_offsets"}});
  c.push_back({"offsets not list", raw_file(hdr(entry("F32", {4}, "0-16")), ok_data), {"\"w\"", "data_offsets"}});
  c.push_back({"begin > end", raw_file(hdr(entry("F32", {4}, {16, 0})), ok_data), {"\"w\"", "begin 16 > end 0"}});
  c.push_back({"end past data", raw_file(hdr(entry("F32", {8}, {0, 32})), ok_data), {"\"w\"", "past the data section"}});
  c.push_back({"huge end", raw_file(hdr(entry("F32", {4}, {~uint64_t(0) - 8, ~uint64_t(0)})), ok_data), {"\"w\"", "past the data section"}});
  c.push_back({"size mismatch", raw_file(hdr(entry("F32", {3}, {0, 16})), ok_data), {"\"w\"", "16 bytes stored", "needs 12"}});
  c.push_back({"bf16 size mismatch", raw_file(hdr(entry("BF16", {4}, {0, 16})), ok_data), {"\"w\"", "needs 8"}});
  {
    json h = json::object();
    h["first"] = entry("F32", {3}, {0, 12});
    h["second"] = entry("F32", {2}, {8, 16});
    c.push_back({"overlap", raw_file(h.dump(), ok_data), {"\"first\"", "\"second\"", "overlap"}});
    h["second"] = entry("F32", {3}, {0, 12});
    c.push_back({"identical ranges", raw_file(h.dump(), ok_data), {"\"first\"", "\"second\"", "overlap"}});
  }
  {
    // A valid file cut short inside its data section.
    std::string full = valid_file({{"a", {4}}, {"tail", {4}}});
    c.push_back({"truncated data", full.substr(0, full.size() - 4), {"\"tail\"", "past the data section"}});
  }
  return c;
}

TEST(Safetensors, CorruptFileCatalogue) {
  TempDir d;
  for (const Corrupt& c : corrupt_catalogue()) {
    SCOPED_TRACE(c.what);
    const std::string path = d.file("model.safetensors");
    write_bytes(path, c.bytes);
    const std::string msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
    EXPECT_CONTAINS(msg, path);
    for (const auto& part : c.expect) EXPECT_CONTAINS(msg, part);
  }
}

TEST(Safetensors, EveryTruncationAndByteFlipFailsCleanly) {
  // Mini fuzz over the reference file: any prefix, and any header byte replaced, must
  // either load or throw InputError (ASan catches out-of-bounds reads).
  std::ifstream in(kFixtures + "single/model.safetensors", std::ios::binary);
  const std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(full.size(), 100u);
  TempDir d;
  const std::string path = d.file("model.safetensors");
  auto try_load = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    try {
      SafetensorsFile f(path);
      for (const auto& n : f.names())
        if (f.find(n)->dtype) {
          Tensor t = f.view(n);
          volatile uint8_t sink = 0;
          for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ static_cast<uint8_t*>(t.data())[i];
        }
    } catch (const InputError&) {
    }
  };
  for (size_t len = 0; len < full.size(); ++len) try_load(full.substr(0, len));
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(full[size_t(i)]);
  for (size_t i = 0; i < 8 + hlen; ++i)
    for (char v : {'\0', '"', '9', '-', ']', '\xff'}) {
      std::string b = full;
      b[i] = v;
      try_load(b);
    }
}

TEST(Safetensors, MissingFiles) {
  TempDir d;
  std::string msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "no model.safetensors");
  EXPECT_CONTAINS(msg, d.str());
  msg = input_error([&] { SafetensorsFile f(d.file("nope.safetensors")); });
  EXPECT_CONTAINS(msg, "nope.safetensors");
  fs::create_directory(d.file("model.safetensors"));  // a directory, not a file
  msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "model.safetensors");
}

// Two shards a: {x}, b: {y} plus an index; `index` overrides the JSON.
void write_sharded(const TempDir& d, const std::string& index) {
  write_bytes(d.file("a.safetensors"), valid_file({{"x", {2}}}));
  write_bytes(d.file("b.safetensors"), valid_file({{"y", {3}}}));
  write_bytes(d.file("model.safetensors.index.json"), index);
}

TEST(Safetensors, ShardedCheckpointErrors) {
  TempDir d;
  const std::string index = d.file("model.safetensors.index.json");
  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  {
    SafetensorsCheckpoint ck(d.str());
    EXPECT_EQ(ck.get("y", {3}).data_as<float>()[2], 0.5f);
  }
  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": "c.safetensors"}})");
  std::string msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, index);
  EXPECT_CONTAINS(msg, "c.safetensors");
  EXPECT_CONTAINS(msg, "\"y\"");
  EXPECT_CONTAINS(msg, "missing");

  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": "a.safetensors"}})");
  msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "\"y\"");
  EXPECT_CONTAINS(msg, "a.safetensors");
  EXPECT_CONTAINS(msg, "lacks it");

  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": "../b.safetensors"}})");
  msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "../b.safetensors");

  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": 3}})");
  EXPECT_CONTAINS(input_error([&] { SafetensorsCheckpoint ck(d.str()); }), "\"y\"");

  write_sharded(d, R"({"weight_map": )");
  msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, index);
  EXPECT_CONTAINS(msg, "not valid JSON");

  write_sharded(d, R"({"metadata": {}})");
  EXPECT_CONTAINS(input_error([&] { SafetensorsCheckpoint ck(d.str()); }), "weight_map");

  // The same tensor in two shards.
  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  write_bytes(d.file("b.safetensors"), valid_file({{"y", {3}}, {"x", {2}}}));
  msg = input_error([&] { SafetensorsCheckpoint ck(d.str()); });
  EXPECT_CONTAINS(msg, "\"x\"");
  EXPECT_CONTAINS(msg, "a.safetensors");
  EXPECT_CONTAINS(msg, "b.safetensors");

  // A corrupt shard names itself.
  write_sharded(d, R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  write_bytes(d.file("b.safetensors"), "short");
  EXPECT_CONTAINS(input_error([&] { SafetensorsCheckpoint ck(d.str()); }), d.file("b.safetensors"));
}

}  // namespace
}  // namespace sparrow
