// SafetensorsCheckpoint: a directory of one or more safetensors files as a WeightSource.
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>

#include "sparrow/core/error.h"
#include "sparrow/model/safetensors.h"

namespace sparrow {
namespace {

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) : dir_(dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (!file_exists(index_path)) {
    SPARROW_REQUIRE(file_exists(single_path),
                    "no model.safetensors or model.safetensors.index.json in checkpoint {}", dir);
    files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    for (const auto& [name, e] : files_.back()->entries()) where_.emplace(name, files_.back().get());
    return;
  }

  std::ifstream in(index_path);
  SPARROW_REQUIRE(in, "cannot open {}", index_path);
  const nlohmann::json index = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  SPARROW_REQUIRE(!index.is_discarded(), "{}: not valid JSON", index_path);
  SPARROW_REQUIRE(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
                  "{}: missing \"weight_map\" object", index_path);
  const auto& wm = index["weight_map"];

  // Open each shard once, in name order; a shard name must be a plain file in DIR.
  std::map<std::string, std::string> first_tensor;  // shard -> a tensor naming it (for messages)
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    SPARROW_REQUIRE(it->is_string(), "{}: tensor \"{}\": shard name is not a string", index_path,
                    it.key());
    const std::string shard = it->get<std::string>();
    SPARROW_REQUIRE(!shard.empty() && shard != "." && shard != ".." &&
                        shard.find('/') == std::string::npos,
                    "{}: tensor \"{}\": shard \"{}\" is not a file name in the checkpoint directory",
                    index_path, it.key(), shard);
    first_tensor.emplace(shard, it.key());
  }
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [shard, tensor] : first_tensor) {
    const std::string path = dir + "/" + shard;
    SPARROW_REQUIRE(file_exists(path), "{}: shard {} (holding tensor \"{}\") is missing", index_path,
                    path, tensor);
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    shards[shard] = files_.back().get();
  }
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    const SafetensorsFile* f = shards.at(it->get<std::string>());
    SPARROW_REQUIRE(f->find(it.key()), "{}: tensor \"{}\" is listed for shard {}, which lacks it",
                    index_path, it.key(), f->path());
  }
  // Every tensor of every shard (the index may omit some); one home per name.
  for (const auto& f : files_)
    for (const auto& [name, e] : f->entries()) {
      auto [pos, inserted] = where_.emplace(name, f.get());
      SPARROW_REQUIRE(inserted, "checkpoint {}: tensor \"{}\" is in both {} and {}", dir, name,
                      pos->second->path(), f->path());
    }
}

std::pair<const SafetensorsEntry*, const SafetensorsFile*> SafetensorsCheckpoint::find(
    const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return {nullptr, nullptr};
  return {it->second->find(name), it->second};
}

bool SafetensorsCheckpoint::has(const std::string& name) const { return where_.count(name) != 0; }

Tensor SafetensorsCheckpoint::get(const std::string& name, const Shape& shape) const {
  auto [e, f] = find(name);
  SPARROW_REQUIRE(e, "missing tensor \"{}\" in checkpoint {}", name, dir_);
  SPARROW_REQUIRE(e->shape == shape, "{}: tensor \"{}\": expected shape {}, stored {}", f->path(),
                  name, shape.str(), e->shape.str());
  Tensor t = f->view(name);
  std::lock_guard<std::mutex> lock(used_mu_);
  used_.insert(name);
  return t;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, f] : where_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> SafetensorsCheckpoint::unused_names() const {
  std::vector<std::string> out;
  std::lock_guard<std::mutex> lock(used_mu_);
  for (const auto& [name, f] : where_)
    if (!used_.count(name)) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<WeightSource> open_safetensors_checkpoint(const std::string& dir) {
  return std::make_unique<SafetensorsCheckpoint>(dir);
}

}  // namespace sparrow
