// What every benchmark reports beside its figures: the machine, the commit, the measured
// memory bandwidth (the roofline for memory-bound kernels), and medians.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "sparrow/core/machine_info.h"
#include "sparrow/model/config.h"

namespace sparrow::bench {

using sparrow::git_commit;
using sparrow::machine_json;
using sparrow::median;
// Read bandwidth in GB/s: every thread sums its share of a buffer far larger than the
// caches; the median of several passes.
double measure_read_bandwidth_gbs(size_t bytes = size_t(1) << 30, int passes = 7);
// Weight bytes one decode step of `batch` tokens must read (elements of `elem` bytes):
// attention of every layer, the expected distinct experts touched, router, shared expert,
// dense MLPs and the lm_head. The numerator of every decode roofline.
double decode_bytes_per_step(const ModelConfig& c, int64_t batch, size_t elem);

}  // namespace sparrow::bench
