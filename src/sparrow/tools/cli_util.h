// Small parsing helpers shared by the `sparrow` subcommands.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sparrow::tools {

// "1,2, 3" -> {1, 2, 3}; throws InputError naming `flag` on anything else.
std::vector<int32_t> parse_id_list(const std::string& text, const char* flag);

// The bytes of a file named on the command line; InputError naming `flag` if unreadable.
std::string read_file_arg(const std::string& path, const char* flag);

// JSON given on the command line (key order kept); InputError naming `flag` if malformed.
nlohmann::ordered_json parse_json_arg(const std::string& text, const char* flag);

}  // namespace sparrow::tools
