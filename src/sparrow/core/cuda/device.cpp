#include "sparrow/core/cuda/device.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

namespace sparrow::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw Error(fmt::format("{}:{}: CUDA error {} ({}) in {}", file, line, cudaGetErrorName(err),
                          cudaGetErrorString(err), expr));
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(fmt::format("{}:{}: launching kernel {} failed: {} ({})", file, line, kernel,
                            cudaGetErrorName(err), cudaGetErrorString(err)));
}

bool available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
}

DeviceInfo device_info(int ordinal) {
  if (ordinal < 0) SPARROW_CUDA_CHECK(cudaGetDevice(&ordinal));
  cudaDeviceProp p{};
  SPARROW_CUDA_CHECK(cudaGetDeviceProperties(&p, ordinal));
  DeviceInfo d;
  d.name = p.name;
  d.ordinal = ordinal;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  d.total_mem = p.totalGlobalMem;
  d.l2_bytes = size_t(p.l2CacheSize);
  d.smem_per_block_optin = p.sharedMemPerBlockOptin;
  SPARROW_CUDA_CHECK(cudaDeviceGetAttribute(&d.sm_clock_mhz, cudaDevAttrClockRate, ordinal));
  SPARROW_CUDA_CHECK(cudaDeviceGetAttribute(&d.mem_clock_mhz, cudaDevAttrMemoryClockRate, ordinal));
  SPARROW_CUDA_CHECK(cudaDeviceGetAttribute(&d.mem_bus_bits, cudaDevAttrGlobalMemoryBusWidth, ordinal));
  d.sm_clock_mhz /= 1000;  // kHz -> MHz
  d.mem_clock_mhz /= 1000;
  return d;
}

namespace {
thread_local cudaStream_t t_stream = nullptr;
std::atomic<bool> g_deterministic{false};
}  // namespace

cudaStream_t current_stream() { return t_stream; }
void set_current_stream(cudaStream_t s) { t_stream = s; }
bool deterministic() { return g_deterministic.load(std::memory_order_relaxed); }
void set_deterministic(bool on) { g_deterministic.store(on, std::memory_order_relaxed); }

Stream::Stream() { SPARROW_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() {
  if (s_) (void)cudaStreamDestroy(s_);
}
void Stream::synchronize() const { SPARROW_CUDA_CHECK(cudaStreamSynchronize(s_)); }

void synchronize() { SPARROW_CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

void copy_async(const Tensor& dst, const Tensor& src) {
  SPARROW_CHECK(dst.dtype() == src.dtype() && dst.numel() == src.numel(),
                "copy: {} {} -> {} {}", dtype_name(src.dtype()), src.shape().str(),
                dtype_name(dst.dtype()), dst.shape().str());
  SPARROW_CHECK(dst.is_contiguous() && src.is_contiguous(), "copy: contiguous tensors expected");
  if (src.nbytes() == 0) return;
  SPARROW_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDefault, current_stream()));
}

void copy(const Tensor& dst, const Tensor& src) {
  copy_async(dst, src);
  synchronize();
}

void copy_bytes(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (n == 0) return;
  SPARROW_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, kind, current_stream()));
  synchronize();
}

Buffer pinned_buffer(DType dtype, Shape shape) {
  const size_t n = size_t(shape.numel()) * dtype_size(dtype);
  void* p = nullptr;
  const cudaError_t err = cudaMallocHost(&p, std::max<size_t>(n, 1));
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: clear it, or the next launch check would report it
    throw_cuda_error(err, "cudaMallocHost", __FILE__, __LINE__);
  }
  std::memset(p, 0, n);
  return Buffer(p, n, [](void* q) { (void)cudaFreeHost(q); }, dtype, shape);
}

DeviceBuffer::DeviceBuffer(size_t nbytes) : nbytes_(nbytes) {
  if (nbytes == 0) return;
  const cudaError_t err = cudaMalloc(&ptr_, nbytes);
  if (err != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    (void)cudaGetLastError();
    (void)cudaMemGetInfo(&free_b, &total_b);
    throw Error(fmt::format("cudaMalloc of {:.2f} GiB failed ({}): {:.2f} GiB free of {:.2f} GiB",
                            double(nbytes) / (1 << 30), cudaGetErrorString(err),
                            double(free_b) / (1 << 30), double(total_b) / (1 << 30)));
  }
}

DeviceBuffer::DeviceBuffer(DType dtype, Shape shape) : DeviceBuffer(size_t(shape.numel()) * dtype_size(dtype)) {
  tensor_ = Tensor(ptr_, dtype, shape, Device::kCUDA);
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) (void)cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), nbytes_(std::exchange(o.nbytes_, 0)), tensor_(o.tensor_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    nbytes_ = std::exchange(o.nbytes_, 0);
    tensor_ = o.tensor_;
  }
  return *this;
}

MemoryPlan plan_memory(size_t weights_bytes, size_t workspace_bytes, double mem_fraction_static) {
  SPARROW_REQUIRE(mem_fraction_static > 0 && mem_fraction_static <= 1,
                  "--mem-fraction-static must be in (0, 1], got {}", mem_fraction_static);
  size_t free_b = 0, total_b = 0;
  SPARROW_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const size_t budget = size_t(double(total_b) * mem_fraction_static);
  const size_t fixed = weights_bytes + workspace_bytes;
  SPARROW_REQUIRE(fixed < budget && budget <= free_b + (total_b - free_b) / 2 + fixed,
                  "device memory: weights {:.2f} GiB + workspace {:.2f} GiB do not fit in "
                  "mem_fraction_static {} of {:.2f} GiB ({:.2f} GiB free)",
                  double(weights_bytes) / (1 << 30), double(workspace_bytes) / (1 << 30),
                  mem_fraction_static, double(total_b) / (1 << 30), double(free_b) / (1 << 30));
  MemoryPlan p;
  p.weights_bytes = (weights_bytes + 255) / 256 * 256;
  p.workspace_bytes = (workspace_bytes + 255) / 256 * 256;
  const size_t left = std::min(budget, free_b) - std::min(std::min(budget, free_b), p.weights_bytes + p.workspace_bytes);
  p.kv_bytes = left / 256 * 256;
  return p;
}

DeviceArena::DeviceArena(const MemoryPlan& plan) : plan_(plan), block_(plan.total()) {
  char* base = static_cast<char*>(block_.data());
  weights_ = Arena("device weights", base, plan.weights_bytes, Device::kCUDA);
  kv_ = Arena("device KV", base + plan.weights_bytes, plan.kv_bytes, Device::kCUDA);
  workspace_ = Arena("device workspace", base + plan.weights_bytes + plan.kv_bytes, plan.workspace_bytes, Device::kCUDA);
}

}  // namespace sparrow::cuda
