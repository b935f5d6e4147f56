// What every benchmark reports beside its figures: the machine, the commit, the measured
// memory bandwidth (the roofline for memory-bound kernels), and medians.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sparrow::bench {

// CPU model, logical cores, memory (from /proc), and the kernel ISA path chosen.
nlohmann::json machine_json();
// `git rev-parse HEAD` of the source tree, or "unknown".
std::string git_commit();
// Read bandwidth in GB/s: every thread sums its share of a buffer far larger than the
// caches; the median of several passes.
double measure_read_bandwidth_gbs(size_t bytes = size_t(1) << 30, int passes = 7);
double median(std::vector<double> v);

}  // namespace sparrow::bench
