// Shared helpers for the tokenizer tests: tokenizers are loaded once per process (parsing an
// 11 MB tokenizer.json takes a while) and the goldens are read from tests/testdata.
#pragma once

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

#include "sparrow/tokenizer/tokenizer.h"

namespace sparrow::testing {

inline std::string testdata(const std::string& rel) { return std::string(SPARROW_TESTDATA_DIR) + "/" + rel; }

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline nlohmann::ordered_json read_json(const std::string& rel) {
  return nlohmann::ordered_json::parse(read_text(testdata(rel)));
}

inline const Tokenizer& tokenizer(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& t = cache[name];
  if (!t) t = Tokenizer::from_dir(testdata("tokenizers/" + name));
  return *t;
}

}  // namespace sparrow::testing
