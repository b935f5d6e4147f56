// Row-wise and elementwise kernels. One block (or warp) owns a row, so a row's result
// never depends on how many rows are in the launch.
#include <cfloat>

#include <algorithm>
#include <type_traits>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"
#include "sparrow/kernels/cuda/route.cuh"

namespace sparrow::cuda::k {
namespace {

struct Sum { template <typename T> __device__ T operator()(T a, T b) const { return a + b; } };
struct Max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

__global__ void embedding_kernel(EmbeddingParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const int32_t id = p.ids[t];
  const bool ok = id >= 0 && id < p.V;
  for (int64_t i = threadIdx.x; i < p.H; i += blockDim.x)
    store_f(p.out, p.out_t, t * p.H + i, ok ? load_f(p.table, p.table_t, int64_t(id) * p.H + i) : 0.f);
}

__global__ void scatter_rows_kernel(ScatterRowsParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x, dst = p.rows[t];
  for (int64_t i = threadIdx.x; i < p.W; i += blockDim.x)
    store_f(p.dst, p.dst_t, dst * p.W + i, load_f(p.src, p.src_t, t * p.W + i));
}

// One block per row; thread i handles columns i, i + blockDim, ... in order; the sum of
// squares is each thread's sequential sum then the fixed block tree.
__global__ void rms_norm_kernel(RmsNormParams p) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float red[32];
  const int64_t row = blockIdx.x, base = row * p.H;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < p.H; i += blockDim.x) {
    float v = load_f(p.x, p.x_t, base + i);
    if (p.residual) {
      v = round_to(p.residual_t, load_f(p.residual, p.residual_t, base + i) + v);
    }
    ss += v * v;
  }
  // With a residual, every thread re-reads only the columns it reads below, after all
  // threads read x: x may alias y, so writes wait for the reduction's barriers.
  const float inv = 1.0f / sqrtf(block_reduce(ss, Sum{}, red) / float(p.H) + p.eps);
  for (int64_t i = threadIdx.x; i < p.H; i += blockDim.x) {
    float v = load_f(p.x, p.x_t, base + i);
    if (p.residual) {
      v = round_to(p.residual_t, load_f(p.residual, p.residual_t, base + i) + v);
      store_f(p.residual, p.residual_t, base + i, v);
    }
    store_f(p.y, p.y_t, base + i, v * inv * load_f(p.w, p.w_t, i));
  }
}

// rms_norm_kernel for H % 8 == 0 and 16-byte aligned rows: thread i holds the 8-column
// chunks i, i + blockDim, ... (at most kNormChunks) in registers, so every load of the row is
// issued at once instead of one latency per column; the sum of squares is each thread's
// in-order sum over its chunks' columns, then the fixed block tree.
constexpr int kNormChunks = 4;
__device__ __forceinline__ void load8(const void* p, DType t, int64_t i, float* f) {
  if (t == DType::kF32) {
    const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
    const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i + 4);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    return;
  }
  const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p) + i);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    if (t == DType::kBF16) {
      f[2 * e] = __uint_as_float(w[e] << 16);
      f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    } else {
      f[2 * e] = __half2float(__ushort_as_half(uint16_t(w[e] & 0xffffu)));
      f[2 * e + 1] = __half2float(__ushort_as_half(uint16_t(w[e] >> 16)));
    }
  }
}
__device__ __forceinline__ void store8(void* p, DType t, int64_t i, const float* f) {
  if (t == DType::kF32) {
    *reinterpret_cast<float4*>(static_cast<float*>(p) + i) = make_float4(f[0], f[1], f[2], f[3]);
    *reinterpret_cast<float4*>(static_cast<float*>(p) + i + 4) = make_float4(f[4], f[5], f[6], f[7]);
    return;
  }
  uint32_t w[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const uint32_t lo = t == DType::kBF16 ? f32_to_bf16_bits(f[2 * e]) : __half_as_ushort(__float2half_rn(f[2 * e]));
    const uint32_t hi = t == DType::kBF16 ? f32_to_bf16_bits(f[2 * e + 1]) : __half_as_ushort(__float2half_rn(f[2 * e + 1]));
    w[e] = lo | (hi << 16);
  }
  *reinterpret_cast<uint4*>(static_cast<uint16_t*>(p) + i) = make_uint4(w[0], w[1], w[2], w[3]);
}

__global__ void rms_norm_vec_kernel(RmsNormParams p) {
  __shared__ float red[32];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t base = int64_t(blockIdx.x) * p.H, chunks = p.H / 8;
  float v[kNormChunks][8];
  float ss = 0.f;
#pragma unroll
  for (int c = 0; c < kNormChunks; ++c) {
    const int64_t ch = threadIdx.x + int64_t(c) * blockDim.x;
    if (ch >= chunks) break;
    load8(p.x, p.x_t, base + ch * 8, v[c]);
    if (p.residual) {
      float r[8];
      load8(p.residual, p.residual_t, base + ch * 8, r);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[c][e] = round_to(p.residual_t, r[e] + v[c][e]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) ss += v[c][e] * v[c][e];
  }
  const float inv = 1.0f / sqrtf(block_reduce(ss, Sum{}, red) / float(p.H) + p.eps);
#pragma unroll
  for (int c = 0; c < kNormChunks; ++c) {
    const int64_t ch = threadIdx.x + int64_t(c) * blockDim.x;
    if (ch >= chunks) break;
    if (p.residual) store8(p.residual, p.residual_t, base + ch * 8, v[c]);
    float w[8], y[8];
    load8(p.w, p.w_t, ch * 8, w);
#pragma unroll
    for (int e = 0; e < 8; ++e) y[e] = v[c][e] * inv * w[e];
    store8(p.y, p.y_t, base + ch * 8, y);
  }
}

__global__ void rope_kernel(RopeParams p) {
  const int64_t half = p.D / 2;
  const int64_t n = p.T * p.heads * half;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, th = idx / half, t = th / p.heads;
    // fp32 angle as HF computes it; cos/sin in double then rounded (matches the CPU).
    const float angle = float(p.positions[t]) * p.inv_freq[i];
    const float c = float(cos(double(angle))), s = float(sin(double(angle)));
    const int64_t o = th * p.D;
    const float a = load_f(p.x, p.x_t, o + i), b = load_f(p.x, p.x_t, o + i + half);
    store_f(p.x, p.x_t, o + i, a * c - b * s);
    store_f(p.x, p.x_t, o + i + half, b * c + a * s);
  }
}

// One block per token: the row in shared memory as fp32; per-head norms one warp per head
// (lane-strided sum of squares, then the warp butterfly), projection norms one block
// reduction each for q and k; RoPE as rope_kernel computes it; one rounding on store.
__global__ void attention_prep_kernel(AttentionPrepParams p) {
  extern __shared__ float row[];
  __shared__ float red[32];
  const int64_t t = blockIdx.x, D = p.D, nq = p.Hq * D, nk = p.Hkv * D, n = nq + 2 * nk;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) row[i] = load_f(p.qkv, p.t, t * p.ld + i);
  __syncthreads();
  if (p.norm == 1) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int64_t h = warp; h < p.Hq + p.Hkv; h += nw) {
      float* x = row + h * D;
      float ss = 0.f;
      for (int64_t d = lane; d < D; d += 32) ss += x[d] * x[d];
      const float inv = 1.0f / sqrtf(warp_sum(ss) / float(D) + p.eps);
      const float* w = h < p.Hq ? p.q_w : p.k_w;
      __syncwarp();
      for (int64_t d = lane; d < D; d += 32) x[d] = x[d] * inv * w[d];
    }
  } else if (p.norm == 2) {
    for (int part = 0; part < 2; ++part) {
      float* x = row + (part ? nq : 0);
      const int64_t len = part ? nk : nq;
      float ss = 0.f;
      for (int64_t i = threadIdx.x; i < len; i += blockDim.x) ss += x[i] * x[i];
      const float inv = 1.0f / sqrtf(block_reduce(ss, Sum{}, red) / float(len) + p.eps);
      const float* w = part ? p.k_w : p.q_w;
      for (int64_t i = threadIdx.x; i < len; i += blockDim.x) x[i] = x[i] * inv * w[i];
    }
  }
  __syncthreads();
  const int64_t half = D / 2;
  for (int64_t idx = threadIdx.x; idx < (p.Hq + p.Hkv) * half; idx += blockDim.x) {
    const int64_t h = idx / half, i = idx % half;
    const float angle = float(p.positions[t]) * p.inv_freq[i];
    const float c = float(cos(double(angle))), s = float(sin(double(angle)));
    float* x = row + h * D;
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
  __syncthreads();
  const int64_t slot = p.cache_loc[t];
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (i < nq) store_f(p.q_out, p.t, t * nq + i, row[i]);
    else if (i < nq + nk) store_f(p.k_cache, p.cache_t, slot * nk + (i - nq), row[i]);
    else store_f(p.v_cache, p.cache_t, slot * nk + (i - nq - nk), row[i]);
  }
}

// E consecutive bf16 values as floats, one 2E-byte access (E = 2, 4 or 8; the address
// aligned to it).
template <int E>
__device__ __forceinline__ void load_bf16_vec(const uint16_t* src, float* f) {
  uint32_t w[E / 2];
  if constexpr (E == 2) w[0] = *reinterpret_cast<const uint32_t*>(src);
  else if constexpr (E == 4) *reinterpret_cast<uint2*>(w) = *reinterpret_cast<const uint2*>(src);
  else *reinterpret_cast<uint4*>(w) = *reinterpret_cast<const uint4*>(src);
#pragma unroll
  for (int i = 0; i < E / 2; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
template <int E>
__device__ __forceinline__ void store_bf16_vec(uint16_t* dst, const float* f) {
  uint32_t w[E / 2];
#pragma unroll
  for (int i = 0; i < E / 2; ++i) w[i] = uint32_t(f32_to_bf16_bits(f[2 * i])) | (uint32_t(f32_to_bf16_bits(f[2 * i + 1])) << 16);
  if constexpr (E == 2) *reinterpret_cast<uint32_t*>(dst) = w[0];
  else if constexpr (E == 4) *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(w);
  else *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(w);
}

// bf16 activations and cache, per-head norms (or none), D = 32 E: block (head group,
// token), warps striding over the heads of q, k and v (the [q; k; v] row is heads of D in
// that order; one group per token for steps of 512+ tokens, several for shorter ones).
// Lane l holds elements [E l, E l + E) of a head in registers (one vector load); the RoPE
// partner of element i < D/2 is i + D/2, held by lane l ^ 16 at the same register, so a
// shuffle brings it. The block computes its token's cos/sin once (as rope_kernel: fp32
// angle, cos/sin in double then rounded) while its warps' first head loads are in flight;
// a warp loads up to kPrepHeadsInFlight heads before it works on any. Per-head norm: the
// lane's E squares in order, then the warp butterfly; x * inv * w; one rounding on store.
constexpr int kPrepWarps = 8;
constexpr int kPrepHeadsInFlight = 4;
template <int E>
__global__ void __launch_bounds__(kPrepWarps * 32) attention_prep_heads_kernel(AttentionPrepParams p) {
  constexpr int64_t D = 32 * E, half = D / 2;
  __shared__ float cs[half], sn[half];
  pdl_wait();
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x, heads = p.Hq + 2 * p.Hkv;  // tokens on x: a step may exceed grid y's 65535
  const int64_t stride = int64_t(gridDim.y) * kPrepWarps;
  const int64_t slot = p.cache_loc[t];
  const uint16_t* src = static_cast<const uint16_t*>(p.qkv) + t * p.ld + E * lane;
  const int64_t i0 = (E * lane) % half;  // the rotation index of this lane's first element
  const bool low = lane < 16;            // holds the first half of the head
  bool first = true;
  for (int64_t h0 = int64_t(blockIdx.y) * kPrepWarps + warp; h0 < heads || first; h0 += kPrepHeadsInFlight * stride) {
    float x[kPrepHeadsInFlight][E];
#pragma unroll
    for (int b = 0; b < kPrepHeadsInFlight; ++b) {
      const int64_t h = h0 + b * stride;
      if (h >= heads) break;
      load_bf16_vec<E>(src + h * D, x[b]);
    }
    if (first) {  // every warp reaches this once, whether or not it has a head
      const float pos = float(p.positions[t]);
      for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
        const float angle = pos * p.inv_freq[i];
        cs[i] = float(cos(double(angle)));
        sn[i] = float(sin(double(angle)));
      }
      __syncthreads();
      first = false;
      if (h0 >= heads) break;
    }
#pragma unroll
    for (int b = 0; b < kPrepHeadsInFlight; ++b) {
      const int64_t h = h0 + b * stride;
      if (h >= heads) break;
      if (h >= p.Hq + p.Hkv) {  // v: stored as is
        store_bf16_vec<E>(static_cast<uint16_t*>(p.v_cache) + (slot * p.Hkv + h - p.Hq - p.Hkv) * D + E * lane, x[b]);
        continue;
      }
      if (p.norm == 1) {
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < E; ++j) ss += x[b][j] * x[b][j];
        const float inv = 1.0f / sqrtf(warp_sum(ss) / float(D) + p.eps);
        float w[E];
        const float* wp = (h < p.Hq ? p.q_w : p.k_w) + E * lane;
        if constexpr (E == 2) *reinterpret_cast<float2*>(w) = *reinterpret_cast<const float2*>(wp);
#pragma unroll
        for (int j = 0; j < E; j += 4)
          if constexpr (E >= 4) *reinterpret_cast<float4*>(w + j) = *reinterpret_cast<const float4*>(wp + j);
#pragma unroll
        for (int j = 0; j < E; ++j) x[b][j] = x[b][j] * inv * w[j];
      }
      float y[E];
#pragma unroll
      for (int j = 0; j < E; ++j) {
        const float other = __shfl_xor_sync(0xffffffffu, x[b][j], 16);
        const float a = low ? x[b][j] : other, bb = low ? other : x[b][j], c = cs[i0 + j], s = sn[i0 + j];
        y[j] = low ? a * c - bb * s : bb * c + a * s;
      }
      uint16_t* dst = h < p.Hq ? static_cast<uint16_t*>(p.q_out) + (t * p.Hq + h) * D
                               : static_cast<uint16_t*>(p.k_cache) + (slot * p.Hkv + h - p.Hq) * D;
      store_bf16_vec<E>(dst + E * lane, y);
    }
  }
}

__global__ void silu_mul_kernel(SiluMulParams p) {
  const int64_t n = p.T * p.I;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = load_f(p.gate, p.gate_t, i), u = load_f(p.up, p.up_t, i);
    store_f(p.y, p.y_t, i, g / (1.0f + expf(-g)) * u);
  }
}

// One warp per token (route.cuh).
__global__ void route_kernel(RouteParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (t >= p.T) return;
  route_token_warp(p.logits, p.logits_t, t, p.E, p.k, p.renormalize, p.ids + t * p.k, p.weights + t * p.k);
}

// One block per row. exp-sum accumulated in double (as the CPU), from fp32 expf.
__global__ void log_softmax_kernel(LogSoftmaxParams p) {
  __shared__ float redf[32];
  __shared__ double redd[32];
  const int64_t base = int64_t(blockIdx.x) * p.V;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < p.V; i += blockDim.x) mx = fmaxf(mx, load_f(p.logits, p.logits_t, base + i));
  mx = block_reduce(mx, Max{}, redf);
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < p.V; i += blockDim.x) s += double(expf(load_f(p.logits, p.logits_t, base + i) - mx));
  s = block_reduce(s, Sum{}, redd);
  const float lse = mx + float(log(s));
  for (int64_t i = threadIdx.x; i < p.V; i += blockDim.x) p.out[base + i] = load_f(p.logits, p.logits_t, base + i) - lse;
}

__global__ void linear_simt_kernel(LinearSimtParams p) {
  const int64_t n = int64_t(blockIdx.y) * blockDim.x + threadIdx.x, t = blockIdx.x;  // tokens on x (no 65535 limit)
  if (n >= p.N) return;
  float acc = 0.f;
  for (int64_t kk = 0; kk < p.K; ++kk)
    acc = fmaf(load_f(p.x, p.in_t, t * p.ldx + kk), load_f(p.w, p.in_t, n * p.ldw + kk), acc);
  if (p.bias) acc += load_f(p.bias, p.bias_t, n);
  store_f(p.y, p.y_t, t * p.ldy + n, acc);
}

// V consecutive columns per thread (4 when H allows 16- (f32) or 8-byte (bf16) loads), the
// token's k slot rows loaded kBatch at a time before any is added: each element's sum is the
// slot-order chain either way (w_0 v_0, then fmaf(w_s, v_s, acc)), so the bits do not
// depend on V. TSlot: float, or uint16_t for bf16 slot values (widened exactly).
template <int V, typename TSlot>
__global__ void moe_combine_kernel(MoeCombineParams p) {
  pdl_wait();
  pdl_launch_dependents();
  constexpr int kBatch = 8;
  const int64_t t = blockIdx.x;  // tokens on x: a step may exceed grid y's 65535
  const int64_t i = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * V;
  if (i >= p.H) return;
  const TSlot* src = static_cast<const TSlot*>(p.slot_out) + t * p.k * p.H + i;
  const float* w = p.weights ? p.weights + t * p.k : nullptr;
  float acc[V];
  for (int s0 = 0; s0 < p.k; s0 += kBatch) {
    float v[kBatch][V];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      if (s0 + b >= p.k) break;
      const TSlot* row = src + int64_t(s0 + b) * p.H;
      if constexpr (V == 4 && std::is_same_v<TSlot, float>) {
        const float4 f = *reinterpret_cast<const float4*>(row);
        v[b][0] = f.x, v[b][1] = f.y, v[b][2] = f.z, v[b][3] = f.w;
      } else if constexpr (V == 4) {
        const uint2 h = *reinterpret_cast<const uint2*>(row);
        v[b][0] = __uint_as_float(h.x << 16), v[b][1] = __uint_as_float(h.x & 0xFFFF0000u);
        v[b][2] = __uint_as_float(h.y << 16), v[b][3] = __uint_as_float(h.y & 0xFFFF0000u);
      } else if constexpr (std::is_same_v<TSlot, float>) {
        v[b][0] = row[0];
      } else {
        v[b][0] = bf16_bits_to_f32(row[0]);
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int s = s0 + b;
      if (s >= p.k) break;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        if (s == 0) acc[e] = w ? w[0] * v[b][e] : v[b][e];
        else acc[e] = w ? fmaf(w[s], v[b][e], acc[e]) : acc[e] + v[b][e];
      }
    }
  }
  const float g = p.shared_out ? 1.0f / (1.0f + expf(-p.shared_logit[t])) : 0.f;
#pragma unroll
  for (int e = 0; e < V; ++e) {
    if (p.shared_out) acc[e] += g * p.shared_out[t * p.H + i + e];
    store_f(p.out, p.out_t, t * p.H + i + e, acc[e]);
  }
}

__global__ void fill_f32_kernel(float* dst, size_t n, float value) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) dst[i] = value;
}

int row_threads(int64_t h) { return h >= 1024 ? 256 : h >= 256 ? 128 : 64; }

}  // namespace

void embedding(const EmbeddingParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  launch_pdl(embedding_kernel, dim3(unsigned(p.T)), dim3(row_threads(p.H)), 0, s, p);
}
void scatter_rows(const ScatterRowsParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  launch_pdl(scatter_rows_kernel, dim3(unsigned(p.T)), dim3(row_threads(p.W)), 0, s, p);
}
void rms_norm(const RmsNormParams& p, cudaStream_t s) {
  if (p.rows == 0) return;
  const auto aligned = [](const void* q) { return q == nullptr || reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  const int threads = row_threads(p.H);
  if (p.H % 8 == 0 && p.H / 8 <= int64_t(threads) * kNormChunks && aligned(p.x) && aligned(p.residual) &&
      aligned(p.w) && aligned(p.y)) {
    launch_pdl(rms_norm_vec_kernel, dim3(unsigned(p.rows)), dim3(threads), 0, s, p);
    return;
  }
  launch_pdl(rms_norm_kernel, dim3(unsigned(p.rows)), dim3(threads), 0, s, p);
}
void rope(const RopeParams& p, cudaStream_t s) {
  const int64_t n = p.T * p.heads * (p.D / 2);
  if (n == 0) return;
  rope_kernel<<<blocks_for(n, 256) < 65535 ? blocks_for(n, 256) : 65535, 256, 0, s>>>(p);
}
void attention_prep(const AttentionPrepParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  const auto aligned16 = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  if (p.norm != 2 && (p.D == 64 || p.D == 128 || p.D == 256) && p.t == DType::kBF16 && p.cache_t == DType::kBF16 &&
      p.ld % 8 == 0 && aligned16(p.qkv) && aligned16(p.q_out) && aligned16(p.k_cache) && aligned16(p.v_cache) &&
      (p.norm == 0 || (aligned16(p.q_w) && aligned16(p.k_w)))) {
    // Decode-sized steps spread a token's heads over blocks; prefill-sized ones take a block
    // per token (its cos/sin computed once).
    const unsigned groups = p.T >= 512 ? 1u : unsigned((p.Hq + 2 * p.Hkv + kPrepWarps - 1) / kPrepWarps);
    const dim3 grid(unsigned(p.T), groups), block(kPrepWarps * 32);
    if (p.D == 64) launch_pdl(attention_prep_heads_kernel<2>, grid, block, 0, s, p);
    else if (p.D == 128) launch_pdl(attention_prep_heads_kernel<4>, grid, block, 0, s, p);
    else launch_pdl(attention_prep_heads_kernel<8>, grid, block, 0, s, p);
    return;
  }
  // Whole-projection norms, other head sizes and dtypes: a block per token, the row in
  // shared memory.
  const size_t smem = size_t((p.Hq + 2 * p.Hkv) * p.D) * sizeof(float);
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured)) {
    cudaFuncSetAttribute(attention_prep_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
  }
  attention_prep_kernel<<<unsigned(p.T), 256, smem, s>>>(p);
}
void silu_mul(const SiluMulParams& p, cudaStream_t s) {
  const int64_t n = p.T * p.I;
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(n, 256) < 65535 ? blocks_for(n, 256) : 65535, 256, 0, s>>>(p);
}
void route_topk_softmax(const RouteParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  launch_pdl(route_kernel, dim3(blocks_for(p.T, 4)), dim3(128), 0, s, p);
}
void log_softmax(const LogSoftmaxParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  log_softmax_kernel<<<unsigned(p.T), 512, 0, s>>>(p);
}
void linear_simt(const LinearSimtParams& p, cudaStream_t s) {
  if (p.T == 0 || p.N == 0) return;
  linear_simt_kernel<<<dim3(unsigned(p.T), blocks_for(p.N, 128)), 128, 0, s>>>(p);
}
void fill_f32(float* dst, size_t n, float value, cudaStream_t s) {
  if (n == 0) return;
  const size_t blocks = std::min<size_t>((n + 255) / 256, 65535);
  fill_f32_kernel<<<unsigned(blocks), 256, 0, s>>>(dst, n, value);
}
void moe_combine(const MoeCombineParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  const bool bf16 = p.slot_t == DType::kBF16;
  const bool wide = p.H % 4 == 0 && reinterpret_cast<uintptr_t>(p.slot_out) % (bf16 ? 8 : 16) == 0;
  const dim3 grid(unsigned(p.T), wide ? blocks_for(p.H / 4, 256) : blocks_for(p.H, 256));
  if (bf16)
    launch_pdl(wide ? moe_combine_kernel<4, uint16_t> : moe_combine_kernel<1, uint16_t>, grid, dim3(256), 0, s, p);
  else
    launch_pdl(wide ? moe_combine_kernel<4, float> : moe_combine_kernel<1, float>, grid, dim3(256), 0, s, p);
}

}  // namespace sparrow::cuda::k
