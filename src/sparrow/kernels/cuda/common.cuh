// Device helpers shared by the .cu files: dtype loads/stores, warp/block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "sparrow/core/dtype.h"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {

// True the first time the calling thread's current device asks (then never again for it).
// Kernel attributes such as the dynamic shared memory limit are per device: a process that
// drives several GPUs (one rank thread each) sets them once on every device, before its
// first launch there (the warm-up, outside graph capture).
inline bool first_use_on_device(std::atomic<uint64_t>& seen) {
  int dev = 0;
  cudaGetDevice(&dev);
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (seen.load(std::memory_order_relaxed) & bit) return false;  // the common case: a plain read
  return (seen.fetch_or(bit) & bit) == 0;
}

// The current device's SM count, cached per device (persistent kernels size their grids
// by it).
inline int current_sm_count() {
  static std::atomic<int> counts[64] = {};
  int dev = 0;
  cudaGetDevice(&dev);
  std::atomic<int>& c = counts[dev & 63];
  int n = c.load(std::memory_order_relaxed);
  if (n == 0) {
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    n = n > 0 ? n : 1;
    c.store(n, std::memory_order_relaxed);
  }
  return n;
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));  // round to nearest even, NaN kept
}

__device__ __forceinline__ float load_f(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kBF16: return bf16_bits_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
    default: return 0.f;
  }
}

__device__ __forceinline__ void store_f(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(p)[i] = v; return;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16_bits(v); return;
    case DType::kF16: static_cast<__half*>(p)[i] = __float2half_rn(v); return;
    default: return;
  }
}

// Value as stored in dtype t (round trip), as the CPU does when it writes then re-reads.
__device__ __forceinline__ float round_to(DType t, float v) {
  switch (t) {
    case DType::kBF16: return bf16_bits_to_f32(f32_to_bf16_bits(v));
    case DType::kF16: return __half2float(__float2half_rn(v));
    default: return v;
  }
}

// A load of a streaming kernel (gemv and the skinny MoE kernels: weights; attention: K/V
// tiles): each byte is read once by its block, so it allocates nothing in L1 (which keeps
// what warps re-read) and lets L2 fetch 256 bytes from DRAM at a time (the rest of those
// bytes come next in the same stream). Only for memory no kernel writes while this one
// runs (the non-coherent path). Measured in docs/gpu.md ("Where batch-1 decode time goes").
__device__ __forceinline__ uint4 ldg_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Eight bf16 packed in 16 bytes -> fp32 (lower index in the low half of each word).
__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    f[2 * e] = __uint_as_float(w[e] << 16);
    f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
  }
}

// Dot product of eight bf16 pairs, fp32 fused multiply-adds in index order.
__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
  float fa[8], fb[8];
  unpack8(a, fa);
  unpack8(b, fb);
  float d = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) d = fmaf(fa[e], fb[e], d);
  return d;
}

// Fixed butterfly trees: the result depends on the lane values only.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum / max (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* smem /* [32] */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // smem may still be read from a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T r = smem[0];
  for (int w = 1; w < nw; ++w) r = op(r, smem[w]);
  return r;
}

// D[16x8] += A[16x16] B[16x8] on the tensor cores (bf16 in, fp32 accumulate). Fragments as
// PTX defines them for m16n8k16 (g = lane / 4, t = lane % 4): a = {(g, 2t..2t+1), (g+8,
// 2t..), (g, 2t+8..), (g+8, 2t+8..)}, b = {(k 2t..2t+1, n g), (k 2t+8.., n g)}, c = {(g,
// 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}; each 32-bit register holds two bf16, the lower
// index in the low half.
__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Four 8x8 bf16 matrices from shared memory (ldmatrix): thread t gives the address of row
// t % 8 of matrix t / 8; register i of thread (g = lane / 4, q = lane % 4) receives matrix
// i's row g, columns 2q and 2q + 1 (.trans: column g, rows 2q and 2q + 1), the fragment
// order of mma_bf16's operands.
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t smem_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr));
}
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// 16 bytes global -> shared without a register round trip (cp.async.cg: L2 only, 256-byte
// L2 fetches); pred false writes 16 zero bytes and reads nothing. Completion by commit
// groups: cp_async_wait<N> returns once at most N of this thread's groups are pending.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// ---- Programmatic dependent launch (PDL, sm_90) ---------------------------------------
// A kernel launched by launch_pdl may start while the previous kernel in the stream is
// still running; it must call pdl_wait() before it reads anything an earlier kernel wrote
// or writes anything an earlier kernel reads, in every block. Work that touches neither
// (streaming weights into registers) may go before the wait: that is the point. Since every
// such kernel waits for its predecessor's completion, ordering stays transitive.
// pdl_launch_dependents() lets the next kernel start launching once every block of this
// one has called it (or exited). Without the launch attribute both are no-ops.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// SPARROW_PDL=0 launches everything plainly (for A/B timing); the kernels are the same.
inline bool pdl_enabled() {
  static const bool on = ab_switch_on("SPARROW_PDL");
  return on;
}

template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);  // errors: the caller's launch check
}

}  // namespace sparrow::cuda::k
