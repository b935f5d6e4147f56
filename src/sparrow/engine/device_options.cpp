#include "sparrow/engine/device_options.h"

#include "sparrow/core/error.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/core/cuda/device.h"
#endif

namespace sparrow {

namespace {
bool gpu_present() {
#ifdef SPARROW_HAVE_CUDA
  return cuda::available();
#else
  return false;
#endif
}
}  // namespace

Device resolve_device(const std::string& flag) {
  if (flag == "cpu") return Device::kCPU;
  if (flag == "auto") return gpu_present() ? Device::kCUDA : Device::kCPU;
  if (flag == "cuda") {
#ifndef SPARROW_HAVE_CUDA
    throw_input_error("--device cuda: this build has no CUDA backend (nvcc was not found at configure time)");
#endif
    SPARROW_REQUIRE(gpu_present(), "--device cuda: no usable CUDA device");
    return Device::kCUDA;
  }
  throw_input_error("--device must be auto, cuda or cpu, got '{}'", flag);
}

const char* device_name(Device d) { return d == Device::kCUDA ? "cuda" : "cpu"; }

void apply_device_flags(const std::string& device, double mem_fraction_static, bool disable_cuda_graph,
                        int64_t cuda_graph_max_bs, Device& device_out, DeviceOptions& o) {
  device_out = resolve_device(device);
  SPARROW_REQUIRE(mem_fraction_static >= 0 && mem_fraction_static < 1, "--mem-fraction-static must be in [0, 1), got {}",
                  mem_fraction_static);
  SPARROW_REQUIRE(cuda_graph_max_bs >= 1 && cuda_graph_max_bs <= 1024, "--cuda-graph-max-bs must be in [1, 1024], got {}",
                  cuda_graph_max_bs);
  if (mem_fraction_static > 0) o.mem_fraction_static = mem_fraction_static;
  o.cuda_graphs = !disable_cuda_graph;
  o.cuda_graph_max_bs = cuda_graph_max_bs;
}

}  // namespace sparrow
