// Paged causal GQA attention through req_to_token (extend and decode, one kernel).
//
// Block = (query row, KV head); warp w handles q heads g*group + w, w + nwarps, ...
// For one (query at absolute position p, q head) a warp walks KV tiles of kAttnTile
// absolute positions [64u, 64u+64) clipped to [0, p], merged in increasing u with the
// online softmax. Lane l scores positions 64u+l and 64u+32+l (fp32 dot product over D in
// increasing d, then * scale); the tile max / sum are warp butterfly trees; lane l owns
// head dims l, l+32, ... of the value accumulator and adds p_j * v_j in increasing j.
// Every number depends only on (p, q, K/V at positions <= p): batch invariant.
// TODO(perf): tensor-core tiles for extend and split-KV (fixed tiles, merged in tile
// order) for long decode contexts; see docs/gpu.md.
#include <cfloat>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8;
constexpr int kDPerLane = kAttnMaxHeadDim / 32;
static_assert(kAttnTile == 64, "two positions per lane");

__global__ void __launch_bounds__(kWarps * 32) paged_attention_kernel(AttentionParams p) {
  __shared__ float q_s[kWarps][kAttnMaxHeadDim];
  const int64_t row = blockIdx.x, g = blockIdx.y;
  // Find the sequence owning this query row.
  int b = -1;
  for (int i = 0; i < p.batch; ++i) {
    const int64_t off = p.q_offsets[i];
    if (row >= off && row < off + p.extend_lens[i]) { b = i; break; }
  }
  if (b < 0) return;
  const int64_t seq = p.seq_lens[b], ext = p.extend_lens[b];
  const int64_t pos = seq - ext + (row - p.q_offsets[b]);
  const int32_t* r2t = p.req_to_token + int64_t(p.req_slots[b]) * p.max_context;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t group = p.Hq / p.Hkv, D = p.D;
  const int64_t kv_stride = p.Hkv * D;

  for (int64_t hi = warp; hi < group; hi += kWarps) {
    const int64_t h = g * group + hi;
    const int64_t qo = (row * p.Hq + h) * D;
    __syncwarp();
    for (int64_t d = lane; d < D; d += 32) q_s[warp][d] = load_f(p.q, p.t, qo + d);
    __syncwarp();
    float m = -INFINITY, l = 0.f;
    float acc[kDPerLane];
#pragma unroll
    for (int i = 0; i < kDPerLane; ++i) acc[i] = 0.f;

    for (int64_t t0 = 0; t0 <= pos; t0 += kAttnTile) {
      float s[2];
      int32_t slot[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t j = t0 + half * 32 + lane;
        s[half] = -INFINITY;
        slot[half] = 0;
        if (j <= pos) {
          slot[half] = r2t[j];
          const int64_t ko = int64_t(slot[half]) * kv_stride + g * D;
          float dot = 0.f;
          if (p.t == DType::kBF16 && (D % 8) == 0) {
            const uint4* kp = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.k) + ko);
            for (int64_t c = 0; c < D / 8; ++c) {
              const uint4 u = kp[c];
              const uint32_t w4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                dot = fmaf(q_s[warp][8 * c + 2 * e], __uint_as_float(w4[e] << 16), dot);
                dot = fmaf(q_s[warp][8 * c + 2 * e + 1], __uint_as_float(w4[e] & 0xffff0000u), dot);
              }
            }
          } else {
            for (int64_t d = 0; d < D; ++d) dot = fmaf(q_s[warp][d], load_f(p.k, p.t, ko + d), dot);
          }
          s[half] = dot * p.scale;
        }
      }
      const float m_new = fmaxf(m, warp_max(fmaxf(s[0], s[1])));
      const float alpha = expf(m - m_new);  // m = -inf on the first tile: alpha = 0
      float pj[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) pj[half] = s[half] == -INFINITY ? 0.f : expf(s[half] - m_new);
      const float tile_sum = warp_sum(pj[0] + pj[1]);
      l = fmaf(l, alpha, tile_sum);
      m = m_new;
#pragma unroll
      for (int i = 0; i < kDPerLane; ++i) acc[i] *= alpha;
      const int64_t n_here = pos - t0 + 1 < kAttnTile ? pos - t0 + 1 : kAttnTile;
      for (int64_t jj = 0; jj < n_here; ++jj) {
        const int half = int(jj >> 5), src = int(jj & 31);
        const float pv = __shfl_sync(0xffffffffu, half ? pj[1] : pj[0], src);
        const int32_t sl = __shfl_sync(0xffffffffu, half ? slot[1] : slot[0], src);
        const int64_t vo = int64_t(sl) * kv_stride + g * D;
#pragma unroll
        for (int i = 0; i < kDPerLane; ++i) {
          const int64_t d = lane + 32 * i;
          if (d < D) acc[i] = fmaf(pv, load_f(p.v, p.t, vo + d), acc[i]);
        }
      }
    }
    
#pragma unroll
    for (int i = 0; i < kDPerLane; ++i) {
      const int64_t d = lane + 32 * i;
      if (d < D) store_f(p.out, p.t, qo + d, acc[i] / l);
    }
  }
}

}  // namespace

void paged_attention(const AttentionParams& p, cudaStream_t s) {
  if (p.T == 0 || p.batch == 0) return;
  paged_attention_kernel<<<dim3(unsigned(p.T), unsigned(p.Hkv)), kWarps * 32, 0, s>>>(p);
}

}  // namespace sparrow::cuda::k
