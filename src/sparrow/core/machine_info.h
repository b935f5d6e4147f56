// What every benchmark reports beside its figures: the machine and the commit.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sparrow {

// CPU model, logical cores, memory (from /proc), whether AVX512_BF16 is there.
nlohmann::json machine_json();
// $SPARROW_COMMIT when set, else `git rev-parse HEAD` of the source tree, or "unknown".
std::string git_commit();
// Median of a sample (0 for an empty one).
double median(std::vector<double> v);

}  // namespace sparrow
