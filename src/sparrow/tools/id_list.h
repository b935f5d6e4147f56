// Parsing of comma-separated token id lists given on the command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparrow::tools {

// "1,2, 3" -> {1, 2, 3}; throws InputError naming `flag` on anything else.
std::vector<int32_t> parse_id_list(const std::string& text, const char* flag);

}  // namespace sparrow::tools
