#include "sparrow/tools/cli_util.h"

#include <fstream>
#include <sstream>

#include <cerrno>
#include <cstdlib>

#include "sparrow/core/error.h"

namespace sparrow::tools {

std::vector<int32_t> parse_id_list(const std::string& text, const char* flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string item = text.substr(i, j - i);
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    SPARROW_REQUIRE(b != std::string::npos, "{}: empty item in '{}'", flag, text);
    item = item.substr(b, e - b + 1);
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    SPARROW_REQUIRE(errno == 0 && end && *end == '\0' && v >= INT32_MIN && v <= INT32_MAX,
                    "{}: '{}' is not a token id", flag, item);
    ids.push_back(int32_t(v));
    i = j + 1;
  }
  return ids;
}

std::string read_file_arg(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  SPARROW_REQUIRE(f.good(), "{}: cannot read {}", flag, path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::ordered_json parse_json_arg(const std::string& text, const char* flag) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("{} is not valid JSON: {}", flag, e.what());
  }
}

}  // namespace sparrow::tools
