// The routed MoE block for decode-sized batches (T <= kMoeSkinnyMaxTokens) in two kernels,
// default mode only (deterministic mode keeps the grouped GEMMs of gemm.cu, whose per-row
// order does not depend on the batch):
//
//  1. gate_up: every block routes all T tokens from the router logits (route.cuh, the
//     router kernel's exact arithmetic) into shared memory; block (0, 0) also stores ids
//     and weights for kernel 2. Block (x, pair) serves the pair's expert only when the pair
//     is that expert's first pair (so each selected expert's rows are streamed once),
//     for every token that picked it. A warp owns one intermediate index n: it streams the
//     gate row n and the up row n with 16-byte loads, several in flight per lane, and does
//     the dot products of each token while it holds them; act = bf16(silu(bf16(g)) * bf16(u)),
//     the grouped GEMM's epilogue.
//  2. down + combine: block (x, t), a warp per output column n: for each slot s in order,
//     v_s = dot(w2[e_s][n, :], act[t*k+s, :]) * weight_s (fp32, as the GEMM epilogue), summed
//     in slot order, plus sigmoid(shared_logit) * shared_out; stored in out's dtype.
//
// At one token this reads each selected expert's weights once, as the bandwidth floor does,
// with no grouping pass, no tile list and no separate combine.
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"
#include "sparrow/kernels/cuda/route.cuh"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8, kUnroll = 8, kSlotGroup = 4, kDownUnroll = 4;

__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    f[2 * e] = __uint_as_float(w[e] << 16);
    f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
  }
}

__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
  float fa[8], fb[8];
  unpack8(a, fa);
  unpack8(b, fb);
  float d = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) d = fmaf(fa[e], fb[e], d);
  return d;
}

// kTok: T rounded up to 1, 2 or 4 (registers per token held).
template <int kTok>
__global__ void __launch_bounds__(kWarps * 32) skinny_gate_up_kernel(MoeSkinnyParams p) {
  __shared__ int32_t s_ids[kMoeSkinnyMaxPairs];
  __shared__ float s_w[kMoeSkinnyMaxPairs];
  pdl_wait();  // the router logits and x come from earlier kernels
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int P = int(p.T) * p.k;
  if (warp < p.T)
    route_token_warp(p.logits, p.logits_t, warp, p.E, p.k, p.renormalize, s_ids + warp * p.k, s_w + warp * p.k);
  __syncthreads();
  if (blockIdx.x == 0 && blockIdx.y == 0)
    for (int i = threadIdx.x; i < P; i += blockDim.x) {
      p.ids[i] = s_ids[i];
      p.weights[i] = s_w[i];
    }
  const int pair = int(blockIdx.y);
  const int32_t e = s_ids[pair];
  for (int q = 0; q < pair; ++q)
    if (s_ids[q] == e) return;  // an earlier pair's block serves this expert
  // The pair of each token that picked e (-1: none; top-k experts are distinct per token).
  int tok_pair[kTok];
#pragma unroll
  for (int j = 0; j < kTok; ++j) {
    tok_pair[j] = -1;
    if (j < p.T)
      for (int s = 0; s < p.k; ++s)
        if (s_ids[j * p.k + s] == e) tok_pair[j] = j * p.k + s;
  }
  const int64_t n = int64_t(blockIdx.x) * kWarps + warp;
  if (n >= p.I) return;
  const int chunks = int(p.H / 8);
  const uint4* g_row = reinterpret_cast<const uint4*>(p.w13 + (int64_t(e) * 2 * p.I + n) * p.H);
  const uint4* u_row = g_row + p.I * p.H / 8;
  float ag[kTok], au[kTok];
#pragma unroll
  for (int j = 0; j < kTok; ++j) ag[j] = au[j] = 0.f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
    uint4 gv[kUnroll], uv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (c0 + 32 * u < chunks) {
        gv[u] = __ldg(g_row + c0 + 32 * u);
        uv[u] = __ldg(u_row + c0 + 32 * u);
      }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = c0 + 32 * u;
      if (c >= chunks) break;
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (tok_pair[j] < 0) continue;
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(p.x + int64_t(j) * p.H) + c);
        ag[j] += dot8(gv[u], xv);
        au[j] += dot8(uv[u], xv);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kTok; ++j) {
    if (tok_pair[j] < 0) continue;
    const float g = round_to(DType::kBF16, warp_sum(ag[j]));
    const float u = round_to(DType::kBF16, warp_sum(au[j]));
    if (lane == 0) p.act[int64_t(tok_pair[j]) * p.I + n] = f32_to_bf16_bits(g / (1.0f + expf(-g)) * u);
  }
}

__global__ void __launch_bounds__(kWarps * 32) skinny_down_kernel(MoeSkinnyParams p) {
  pdl_wait();  // ids, weights and act come from the gate_up kernel
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.y, n = int64_t(blockIdx.x) * kWarps + warp;
  if (n >= p.H) return;
  const int chunks = int(p.I / 8);
  float acc = 0.f;
  for (int s0 = 0; s0 < p.k; s0 += kSlotGroup) {
    const uint4* wrow[kSlotGroup];
    const uint4* arow[kSlotGroup];
#pragma unroll
    for (int g = 0; g < kSlotGroup; ++g) {
      const int s = s0 + g < p.k ? s0 + g : s0;  // past k: re-read a valid slot, never summed
      const int64_t pair = t * p.k + s;
      wrow[g] = reinterpret_cast<const uint4*>(p.w2 + (int64_t(p.ids[pair]) * p.H + n) * p.I);
      arow[g] = reinterpret_cast<const uint4*>(p.act + pair * p.I);
    }
    float d[kSlotGroup] = {};
    for (int c0 = lane; c0 < chunks; c0 += 32 * kDownUnroll) {
      uint4 wv[kSlotGroup][kDownUnroll];
#pragma unroll
      for (int g = 0; g < kSlotGroup; ++g)
#pragma unroll
        for (int u = 0; u < kDownUnroll; ++u)
          if (c0 + 32 * u < chunks) wv[g][u] = __ldg(wrow[g] + c0 + 32 * u);
#pragma unroll
      for (int g = 0; g < kSlotGroup; ++g)
#pragma unroll
        for (int u = 0; u < kDownUnroll; ++u)
          if (c0 + 32 * u < chunks) d[g] += dot8(wv[g][u], __ldg(arow[g] + c0 + 32 * u));
    }
#pragma unroll
    for (int g = 0; g < kSlotGroup; ++g) {
      const float v = warp_sum(d[g]);
      if (s0 + g < p.k) acc += v * p.weights[t * p.k + s0 + g];
    }
  }
  if (p.shared_out) acc += 1.0f / (1.0f + expf(-p.shared_logit[t])) * p.shared_out[t * p.H + n];
  if (lane == 0) store_f(p.out, p.out_t, t * p.H + n, acc);
}

}  // namespace

void moe_skinny(const MoeSkinnyParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  const unsigned P = unsigned(p.T * p.k);
  const dim3 grid(unsigned((p.I + kWarps - 1) / kWarps), P), block(kWarps * 32);
  static_assert(kMoeSkinnyMaxTokens == 4, "kTok variants below");
  if (p.T == 1) launch_pdl(skinny_gate_up_kernel<1>, grid, block, 0, s, p);
  else if (p.T == 2) launch_pdl(skinny_gate_up_kernel<2>, grid, block, 0, s, p);
  else launch_pdl(skinny_gate_up_kernel<4>, grid, block, 0, s, p);
  launch_pdl(skinny_down_kernel, dim3(unsigned((p.H + kWarps - 1) / kWarps), unsigned(p.T)), dim3(kWarps * 32), 0, s, p);
}

}  // namespace sparrow::cuda::k
