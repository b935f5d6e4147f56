// Which device the engine runs the model on, and the GPU's settings (SGLang's flag names:
// --device, --mem-fraction-static, --cuda-graph-max-bs, --disable-cuda-graph).
#pragma once

#include <cstdint>
#include <string>

#include "sparrow/core/tensor.h"

namespace sparrow {

struct DeviceOptions {
  double mem_fraction_static = 0.88;  // share of GPU memory for weights + KV + workspace
  bool cuda_graphs = true;            // --disable-cuda-graph turns off
  int64_t cuda_graph_max_bs = 160;    // largest decode batch replayed from a graph
  // Filled in by the engine from its own options:
  int64_t kv_slots = 0;               // 0: whatever the memory plan leaves for the KV pool
  int64_t max_step_tokens = 8192;     // most tokens of one step (sizes the workspace)
  int64_t max_batch = 256;            // most sequences of one step
  int64_t max_context = 4096;         // req_to_token row width
  // Tests on a one-GPU machine: a world above 1 puts every rank on the current GPU over
  // SharedDeviceWorld (parallel/cuda/shared_device_world.h) instead of one GPU per rank
  // over NCCL; no CUDA graphs, and --mem-fraction-static is split between the ranks.
  bool share_one_device = false;
};

// "cpu", "cuda" or "auto" (cuda when this build has CUDA and a GPU is present). InputError
// for anything else, or "cuda" without a usable GPU.
Device resolve_device(const std::string& flag);
const char* device_name(Device d);

// The device flags as the tools take them (one place for serve, generate and the
// benchmarks): resolves `device`, validates the rest into `o` (mem_fraction_static 0 keeps
// the default).
void apply_device_flags(const std::string& device, double mem_fraction_static, bool disable_cuda_graph,
                        int64_t cuda_graph_max_bs, Device& device_out, DeviceOptions& o);

}  // namespace sparrow
