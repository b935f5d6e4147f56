// The routed MoE block for decode-sized batches (T <= kMoeSkinnyMaxTokens) in two kernels,
// default mode only (deterministic mode keeps the grouped GEMMs of gemm.cu, whose per-row
// order does not depend on the batch):
//
//  1. gate_up (persistent, about two blocks per SM): each block routes all T tokens from
//     the router logits (route.cuh, the router kernel's exact arithmetic) into shared
//     memory, block 0 also stores ids and weights for kernel 2, and marks each pair that is
//     its expert's first (so each selected expert's rows are streamed once, for every token
//     that picked it). Warps then stride over the (leading pair, n) rows: a warp streams the
//     gate row n and the up row n with 16-byte loads, the next batch loaded before the
//     current one is used, and does each token's dot products while it holds them;
//     act = bf16(silu(bf16(g)) * bf16(u)), the grouped GEMM's epilogue.
//  2. down + combine: block (x, t), a warp per output column n: the (slot, chunk) items of
//     the token's k rows of w2 in one flattened pass, dot * weight[slot] accumulated per
//     lane, the warp butterfly, plus sigmoid(shared_logit) * shared_out; stored in out's
//     dtype (docs/numerics.md, "MoE at decode sizes").
//
// At one token this reads each selected expert's weights once, as the bandwidth floor does,
// with no grouping pass, no tile list and no separate combine.
#include <algorithm>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"
#include "sparrow/kernels/cuda/route.cuh"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8, kUnroll = 4, kDownBatch = 12;

// kTok: T rounded up to 1, 2 or 4 (registers per token held). Persistent: a grid of about
// two blocks per SM; each block routes once, then its warps walk the (pair, n) items of the
// leading pairs with a stride of all warps, loading the next batch of weight chunks before
// computing the current one (two register buffers), so every warp keeps loads in flight.
template <int kTok>
__global__ void __launch_bounds__(kWarps * 32, 2) skinny_gate_up_kernel(MoeSkinnyParams p) {
  __shared__ int32_t s_ids[kMoeSkinnyMaxPairs];
  __shared__ float s_w[kMoeSkinnyMaxPairs];
  __shared__ int32_t s_tp[kMoeSkinnyMaxPairs][kTok];  // leader pair -> pair of each token (-1 none); row 0 = -2: not a leader
  pdl_wait();  // the router logits and x come from earlier kernels
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int P = int(p.T) * p.k;
  if (warp < p.T)
    route_token_warp(p.logits, p.logits_t, warp, p.E, p.k, p.renormalize, s_ids + warp * p.k, s_w + warp * p.k);
  __syncthreads();
  if (blockIdx.x == 0)
    for (int i = threadIdx.x; i < P; i += blockDim.x) {
      p.ids[i] = s_ids[i];
      p.weights[i] = s_w[i];
    }
  for (int q = threadIdx.x; q < P; q += blockDim.x) {
    const int32_t e = s_ids[q];
    bool lead = true;
    for (int r = 0; r < q; ++r) lead = lead && s_ids[r] != e;
#pragma unroll
    for (int j = 0; j < kTok; ++j) {
      int tp = -1;
      if (j < p.T)
        for (int s = 0; s < p.k; ++s)
          if (s_ids[j * p.k + s] == e) tp = j * p.k + s;  // top-k experts are distinct per token
      s_tp[q][j] = tp;
    }
    if (!lead) s_tp[q][0] = -2;
  }
  __syncthreads();
  const int chunks = int(p.H / 8);
  const int64_t items = int64_t(P) * p.I, stride = int64_t(gridDim.x) * kWarps;
  const auto leading = [&](int64_t it) { return s_tp[it / p.I][0] != -2; };
  int64_t it = int64_t(blockIdx.x) * kWarps + warp;
  while (it < items && !leading(it)) it += stride;
  if (it >= items) return;
  const auto row_of = [&](int64_t item) {
    return reinterpret_cast<const uint4*>(p.w13 + (int64_t(s_ids[item / p.I]) * 2 * p.I + item % p.I) * p.H);
  };
  const int64_t up_off = p.I * p.H / 8;
  uint4 gv[kUnroll], uv[kUnroll], gn[kUnroll], un[kUnroll];
  const auto load = [&](int64_t item, int c0, uint4* g, uint4* u) {
    const uint4* gr = row_of(item);
#pragma unroll
    for (int k = 0; k < kUnroll; ++k)
      if (c0 + 32 * k < chunks) {
        g[k] = ldg_stream(gr + c0 + 32 * k);
        u[k] = ldg_stream(gr + up_off + c0 + 32 * k);
      }
  };
  int c0 = lane;
  load(it, c0, gv, uv);
  float ag[kTok], au[kTok];
#pragma unroll
  for (int j = 0; j < kTok; ++j) ag[j] = au[j] = 0.f;
  while (true) {
    // The next batch: the rest of this row, else the next leading item of this warp.
    int64_t nit = it;
    int nc0 = c0 + 32 * kUnroll;
    if (nc0 - lane >= chunks) {
      nc0 = lane;
      nit = it + stride;
      while (nit < items && !leading(nit)) nit += stride;
    }
    if (nit < items) load(nit, nc0, gn, un);
    const int pair = int(it / p.I);
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int c = c0 + 32 * k;
      if (c >= chunks) break;
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (s_tp[pair][j] < 0) continue;
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(p.x + int64_t(j) * p.H) + c);
        ag[j] += dot8(gv[k], xv);
        au[j] += dot8(uv[k], xv);
      }
    }
    if (nit != it) {  // row done
      const int64_t n = it % p.I;
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        const int tp = s_tp[pair][j];
        const float g = round_to(DType::kBF16, warp_sum(ag[j]));
        const float u = round_to(DType::kBF16, warp_sum(au[j]));
        if (lane == 0 && tp >= 0) p.act[int64_t(tp) * p.I + n] = f32_to_bf16_bits(g / (1.0f + expf(-g)) * u);
        ag[j] = au[j] = 0.f;
      }
      if (nit >= items) return;
    }
    it = nit;
    c0 = nc0;
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) gv[k] = gn[k], uv[k] = un[k];
  }
}

// Block (x, t), a warp per output column n: lane l takes the (slot, chunk) items l, l + 32,
// ... of the flattened [k][I/8] space in increasing order, kDownBatch loads in flight, and
// adds dot * weight[slot]; then the warp butterfly (a fixed order for the row: the token's
// result does not depend on the batch).
__global__ void __launch_bounds__(kWarps * 32) skinny_down_kernel(MoeSkinnyParams p) {
  __shared__ int32_t s_ids[kMoeSkinnyMaxPairs];
  __shared__ float s_w[kMoeSkinnyMaxPairs];
  pdl_wait();  // ids, weights and act come from the gate_up kernel
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.y, n = int64_t(blockIdx.x) * kWarps + warp;
  for (int s = threadIdx.x; s < p.k; s += blockDim.x) {
    s_ids[s] = p.ids[t * p.k + s];
    s_w[s] = p.weights[t * p.k + s];
  }
  __syncthreads();
  if (n >= p.H) return;
  const int chunks = int(p.I / 8), total = p.k * chunks;
  float acc = 0.f;
  for (int i0 = lane; i0 < total; i0 += 32 * kDownBatch) {
    uint4 wv[kDownBatch], av[kDownBatch];
#pragma unroll
    for (int b = 0; b < kDownBatch; ++b) {
      const int i = i0 + 32 * b;
      if (i < total) {
        const int s = i / chunks, c = i - s * chunks;
        wv[b] = ldg_stream(reinterpret_cast<const uint4*>(p.w2 + (int64_t(s_ids[s]) * p.H + n) * p.I) + c);
        av[b] = __ldg(reinterpret_cast<const uint4*>(p.act + (t * p.k + s) * p.I) + c);
      }
    }
#pragma unroll
    for (int b = 0; b < kDownBatch; ++b) {
      const int i = i0 + 32 * b;
      if (i < total) acc += dot8(wv[b], av[b]) * s_w[i / chunks];
    }
  }
  acc = warp_sum(acc);
  if (p.shared_out) acc += 1.0f / (1.0f + expf(-p.shared_logit[t])) * p.shared_out[t * p.H + n];
  if (lane == 0) store_f(p.out, p.out_t, t * p.H + n, acc);
}

}  // namespace

void moe_skinny(const MoeSkinnyParams& p, cudaStream_t s) {
  if (p.T == 0) return;
  const unsigned P = unsigned(p.T * p.k);
  const int sms = current_sm_count();
  const int64_t warps_needed = (int64_t(P) * p.I + 1) / 2;  // about two rows per warp at least
  const dim3 grid(unsigned(std::max<int64_t>(1, std::min<int64_t>(2 * sms, (warps_needed + kWarps - 1) / kWarps)))),
      block(kWarps * 32);
  static_assert(kMoeSkinnyMaxTokens == 4, "kTok variants below");
  if (p.T == 1) launch_pdl(skinny_gate_up_kernel<1>, grid, block, 0, s, p);
  else if (p.T == 2) launch_pdl(skinny_gate_up_kernel<2>, grid, block, 0, s, p);
  else launch_pdl(skinny_gate_up_kernel<4>, grid, block, 0, s, p);
  launch_pdl(skinny_down_kernel, dim3(unsigned((p.H + kWarps - 1) / kWarps), unsigned(p.T)), dim3(kWarps * 32), 0, s, p);
}

}  // namespace sparrow::cuda::k
