// CUDA device support: error checks, the current stream, device properties, host<->device
// copies, and DeviceArena, the one up-front device allocation that is carved into the
// weights, the KV pool and the per-step workspace (no cudaMalloc in the decode loop).
// Compiled only when the build has CUDA (SPARROW_HAVE_CUDA); host code, no kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "sparrow/core/arena.h"
#include "sparrow/core/error.h"
#include "sparrow/core/tensor.h"

namespace sparrow::cuda {

// Throws sparrow::Error naming the call, the CUDA error and where it happened.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
// After a kernel launch: reports launch-configuration errors (cudaGetLastError).
void check_launch(const char* kernel, const char* file, int line);

}  // namespace sparrow::cuda

#define SPARROW_CUDA_CHECK(expr)                                                           \
  do {                                                                                     \
    const cudaError_t sparrow_err_ = (expr);                                               \
    if (sparrow_err_ != cudaSuccess) [[unlikely]]                                          \
      ::sparrow::cuda::throw_cuda_error(sparrow_err_, #expr, __FILE__, __LINE__);          \
  } while (0)

#define SPARROW_CUDA_CHECK_LAUNCH(name) ::sparrow::cuda::check_launch(name, __FILE__, __LINE__)

namespace sparrow::cuda {

bool available();  // a CUDA device is present and usable
struct DeviceInfo {
  std::string name;
  int ordinal = 0, cc_major = 0, cc_minor = 0, sm_count = 0;
  size_t total_mem = 0, l2_bytes = 0, smem_per_block_optin = 0;
  int sm_clock_mhz = 0, mem_clock_mhz = 0, mem_bus_bits = 0;  // max clocks (cudaDeviceGetAttribute)
};
DeviceInfo device_info(int ordinal = -1);

// The stream every op launches on (per host thread; default: the legacy default stream).
cudaStream_t current_stream();
void set_current_stream(cudaStream_t s);

// Owning non-blocking stream; sets itself current for the scope with StreamGuard.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void synchronize() const;

 private:
  cudaStream_t s_ = nullptr;
};

class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t s) : prev_(current_stream()) { set_current_stream(s); }
  ~StreamGuard() { set_current_stream(prev_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t prev_;
};

// Deterministic mode: dense GEMMs use the fixed-configuration batch-invariant kernel
// instead of cuBLASLt (process-wide).
bool deterministic();
void set_deterministic(bool on);

// Copies between tensors of the same dtype and element count (either side on either
// device; both contiguous), on the current stream. Synchronous variants wait for it.
void copy_async(const Tensor& dst, const Tensor& src);
void copy(const Tensor& dst, const Tensor& src);
void copy_bytes(void* dst, const void* src, size_t n, cudaMemcpyKind kind);  // synchronous
void synchronize();  // the current stream

// Zeroed page-locked host memory: copies between it and the device are DMA, asynchronous
// for real, at full bus speed (pageable memory is staged by the driver).
Buffer pinned_buffer(DType dtype, Shape shape);

// Owning device allocation (one cudaMalloc). For set-up time only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t nbytes);
  DeviceBuffer(DType dtype, Shape shape);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return ptr_; }
  size_t nbytes() const { return nbytes_; }
  const Tensor& tensor() const { return tensor_; }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_ = 0;
  Tensor tensor_;
};

// How the one device allocation is split. kv_bytes is what is left of
// mem_fraction_static * total memory after weights and workspace (SGLang's
// --mem-fraction-static semantics).
struct MemoryPlan {
  size_t weights_bytes = 0, kv_bytes = 0, workspace_bytes = 0;
  size_t total() const { return weights_bytes + kv_bytes + workspace_bytes; }
};
MemoryPlan plan_memory(size_t weights_bytes, size_t workspace_bytes, double mem_fraction_static);

class DeviceArena {
 public:
  explicit DeviceArena(const MemoryPlan& plan);
  Arena& weights() { return weights_; }
  Arena& kv() { return kv_; }
  Arena& workspace() { return workspace_; }
  const MemoryPlan& plan() const { return plan_; }

 private:
  MemoryPlan plan_;
  DeviceBuffer block_;
  Arena weights_, kv_, workspace_;
};

}  // namespace sparrow::cuda
