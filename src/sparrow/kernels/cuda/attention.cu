// Paged causal GQA attention through req_to_token: one algorithm, two launch shapes.
//
// The keys of a query at absolute position p are cut into fixed splits of S absolute
// positions ([sS, sS+S) clipped to [0, p]; S from the engine's max context only), each
// split into tiles of kAttnTile positions. A split's partial (m, l, acc) is an online
// softmax over its tiles in increasing order; partials are merged in increasing split order
// by merge_partial(). Both launch shapes run exactly this arithmetic (the same device
// functions, explicit fmaf / __fmul_rn, so no contraction differs), so a query's result
// depends only on (p, q, K/V at positions <= p, S): batch invariant, and the same whether
// its step was an extend or a decode.
//   * extend shape: block = (query row, KV head), splits walked in order inside the block;
//   * decode-split shape (T == batch, scratch given): block = (row, KV head, split) writes
//     its partial to scratch, then merge_kernel folds them per (row, q head) in split order.
//     Short decode steps then use S-position chunks of the context in parallel.
// Inside a block, each tile's K and V rows are staged in shared memory (fp32) once and
// read by every warp; warp w handles q heads w, w + kWarps, ... of the KV head's group.
// Lane l scores positions l and l+32 of a tile (fp32 dot over D in increasing d, * scale);
// tile max / sum are warp butterfly trees; lane l owns head dims l, l+32, ... of acc and
// adds p_j * v_j in increasing j.
#include <cfloat>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kWarps = 8;
constexpr int kDPerLane = kAttnMaxHeadDim / 32;
constexpr int kHeadsPerWarp = 4;  // group (Hq / Hkv) up to kWarps * kHeadsPerWarp
static_assert(kAttnTile == 64, "two positions per lane");

struct Partial {
  float m, l;
  float acc[kDPerLane];
};

__device__ __forceinline__ void partial_init(Partial& s) {
  s.m = -INFINITY;
  s.l = 0.f;
#pragma unroll
  for (int i = 0; i < kDPerLane; ++i) s.acc[i] = 0.f;
}

// run = run (+) part, softmax-merged (run may be empty: m = -inf gives a = 0 exactly).
__device__ __forceinline__ void merge_partial(Partial& run, float pm, float pl, const float* pacc) {
  const float m_new = fmaxf(run.m, pm);
  const float a = expf(run.m - m_new), b = expf(pm - m_new);
  run.l = fmaf(run.l, a, __fmul_rn(pl, b));
#pragma unroll
  for (int i = 0; i < kDPerLane; ++i) run.acc[i] = fmaf(run.acc[i], a, __fmul_rn(pacc[i], b));
  run.m = m_new;
}

struct Smem {
  float* k;      // [kAttnTile][D + 1] (+1: lanes reading different rows hit different banks)
  float* v;      // [kAttnTile][D]
  float* q;      // [group][D]
  float* p;      // [kWarps][kAttnTile]
  int32_t* slot; // [kAttnTile]
};

__device__ __forceinline__ Smem carve(float* base, int64_t D, int64_t group) {
  Smem s;
  s.k = base;
  s.v = s.k + kAttnTile * (D + 1);
  s.q = s.v + kAttnTile * D;
  s.p = s.q + group * D;
  s.slot = reinterpret_cast<int32_t*>(s.p + kWarps * kAttnTile);
  return s;
}

size_t smem_bytes(int64_t D, int64_t group) {
  return size_t(kAttnTile * (D + 1) + kAttnTile * D + group * D + kWarps * kAttnTile + kAttnTile) * 4;
}

struct Query {
  int b;
  int64_t pos;
  const int32_t* r2t;
};

__device__ __forceinline__ Query find_query(const AttentionParams& p, int64_t row) {
  Query r{-1, 0, nullptr};
  for (int i = 0; i < p.batch; ++i) {
    const int64_t off = p.q_offsets[i];
    if (row >= off && row < off + p.extend_lens[i]) {
      r.b = i;
      r.pos = p.seq_lens[i] - p.extend_lens[i] + (row - off);
      r.r2t = p.req_to_token + int64_t(p.req_slots[i]) * p.max_context;
      break;
    }
  }
  return r;
}

// The partial of positions [j0, j1) (j1 - 1 <= pos) for this warp's heads, into st[].
__device__ void split_partial(const AttentionParams& p, const Smem& sm, const Query& qy, int64_t g, int64_t j0,
                              int64_t j1, Partial* st, int nh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t D = p.D, kv_stride = p.Hkv * D;
  for (int h = 0; h < nh; ++h) partial_init(st[h]);
  for (int64_t t0 = j0; t0 < j1; t0 += kAttnTile) {
    const int n = int(j1 - t0 < kAttnTile ? j1 - t0 : kAttnTile);
    __syncthreads();  // the previous tile's rows are no longer read
    for (int j = threadIdx.x; j < n; j += blockDim.x) sm.slot[j] = qy.r2t[t0 + j];
    __syncthreads();
    // Stage K and V rows of this KV head (fp32).
    if (p.t == DType::kBF16 && D % 8 == 0) {
      const int chunks = int(D / 8);
      for (int c = threadIdx.x; c < n * chunks; c += blockDim.x) {
        const int j = c / chunks, d0 = (c - j * chunks) * 8;
        const int64_t off = int64_t(sm.slot[j]) * kv_stride + g * D + d0;
        const uint4 ku = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.k) + off);
        const uint4 vu = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.v) + off);
        const uint32_t kw[4] = {ku.x, ku.y, ku.z, ku.w}, vw[4] = {vu.x, vu.y, vu.z, vu.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          sm.k[j * (D + 1) + d0 + 2 * e] = __uint_as_float(kw[e] << 16);
          sm.k[j * (D + 1) + d0 + 2 * e + 1] = __uint_as_float(kw[e] & 0xffff0000u);
          sm.v[j * D + d0 + 2 * e] = __uint_as_float(vw[e] << 16);
          sm.v[j * D + d0 + 2 * e + 1] = __uint_as_float(vw[e] & 0xffff0000u);
        }
      }
    } else {
      for (int c = threadIdx.x; c < n * int(D); c += blockDim.x) {
        const int j = c / int(D), d = c - j * int(D);
        const int64_t off = int64_t(sm.slot[j]) * kv_stride + g * D + d;
        sm.k[j * (D + 1) + d] = load_f(p.k, p.t, off);
        sm.v[j * D + d] = load_f(p.v, p.t, off);
      }
    }
    __syncthreads();
    for (int h = 0; h < nh; ++h) {
      const float* q = sm.q + (warp + h * kWarps) * D;
      float s[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int j = half * 32 + lane;
        s[half] = -INFINITY;
        if (j < n) {
          const float* kr = sm.k + j * (D + 1);
          // Four interleaved partial sums (d mod 4) combined pairwise: a fixed order that
          // gives the FMA chains room to overlap.
          float d4[4] = {0.f, 0.f, 0.f, 0.f};
          int d = 0;
          for (; d + 4 <= int(D); d += 4) {
#pragma unroll
            for (int u = 0; u < 4; ++u) d4[u] = fmaf(q[d + u], kr[d + u], d4[u]);
          }
          for (; d < int(D); ++d) d4[d & 3] = fmaf(q[d], kr[d], d4[d & 3]);
          const float dot = __fadd_rn(__fadd_rn(d4[0], d4[1]), __fadd_rn(d4[2], d4[3]));
          s[half] = __fmul_rn(dot, p.scale);
        }
      }
      Partial& ps = st[h];
      const float m_new = fmaxf(ps.m, warp_max(fmaxf(s[0], s[1])));
      const float alpha = expf(ps.m - m_new);  // -inf on the split's first tile: alpha = 0
      float pj[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) pj[half] = s[half] == -INFINITY ? 0.f : expf(s[half] - m_new);
      ps.l = fmaf(ps.l, alpha, warp_sum(pj[0] + pj[1]));
      ps.m = m_new;
      float* pw = sm.p + warp * kAttnTile;
      __syncwarp();
      pw[lane] = pj[0];
      pw[lane + 32] = pj[1];
      __syncwarp();
      // Lane dims as independent chains, each adding p_j * v_j in increasing j.
      const int nd = (int(D) - lane + 31) / 32;  // dims this lane owns
      float a[kDPerLane];
#pragma unroll
      for (int i = 0; i < kDPerLane; ++i) a[i] = __fmul_rn(ps.acc[i], alpha);
      for (int j = 0; j < n; ++j) {
        const float pv = pw[j];
        const float* vr = sm.v + j * int(D) + lane;
#pragma unroll
        for (int i = 0; i < kDPerLane; ++i)
          if (i < nd) a[i] = fmaf(pv, vr[32 * i], a[i]);
      }
#pragma unroll
      for (int i = 0; i < kDPerLane; ++i) ps.acc[i] = a[i];
    }
  }
}

__device__ __forceinline__ void stage_queries(const AttentionParams& p, const Smem& sm, int64_t row, int64_t g) {
  const int64_t group = p.Hq / p.Hkv;
  for (int64_t i = threadIdx.x; i < group * p.D; i += blockDim.x)
    sm.q[i] = load_f(p.q, p.t, (row * p.Hq + g * group) * p.D + i);
}

// Extend shape: grid (T, Hkv); every split of the query in order, merged in the block.
__global__ void __launch_bounds__(kWarps * 32) attention_extend_kernel(AttentionParams p) {
  extern __shared__ float smem_raw[];
  const int64_t row = blockIdx.x, g = blockIdx.y, group = p.Hq / p.Hkv;
  const Query qy = find_query(p, row);
  if (qy.b < 0) return;
  const Smem sm = carve(smem_raw, p.D, group);
  stage_queries(p, sm, row, g);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nh = warp < group ? int((group - 1 - warp) / kWarps + 1) : 0;
  Partial run[kHeadsPerWarp], part[kHeadsPerWarp];
  for (int h = 0; h < kHeadsPerWarp; ++h) partial_init(run[h]);
  for (int64_t j0 = 0; j0 <= qy.pos; j0 += p.split) {
    const int64_t j1 = j0 + p.split < qy.pos + 1 ? j0 + p.split : qy.pos + 1;
    split_partial(p, sm, qy, g, j0, j1, part, nh);
    for (int h = 0; h < nh; ++h) merge_partial(run[h], part[h].m, part[h].l, part[h].acc);
  }
  for (int h = 0; h < nh; ++h) {
    const int64_t qo = (row * p.Hq + g * group + warp + h * kWarps) * p.D;
#pragma unroll
    for (int i = 0; i < kDPerLane; ++i) {
      const int64_t d = lane + 32 * i;
      if (d < p.D) store_f(p.out, p.t, qo + d, run[h].acc[i] / run[h].l);
    }
  }
}

// Decode-split shape: grid (T, Hkv, splits); each block writes one split's partials:
// partials[((row * Hq + h) * n_splits + s) * (D + 2) + {0: m, 1: l, 2..: acc}].
__global__ void __launch_bounds__(kWarps * 32) attention_split_kernel(AttentionParams p) {
  extern __shared__ float smem_raw[];
  const int64_t row = blockIdx.x, g = blockIdx.y, s = blockIdx.z, group = p.Hq / p.Hkv;
  const Query qy = find_query(p, row);
  const int64_t j0 = s * p.split;
  if (qy.b < 0 || j0 > qy.pos) return;
  const int64_t j1 = j0 + p.split < qy.pos + 1 ? j0 + p.split : qy.pos + 1;
  const Smem sm = carve(smem_raw, p.D, group);
  stage_queries(p, sm, row, g);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nh = warp < group ? int((group - 1 - warp) / kWarps + 1) : 0;
  Partial part[kHeadsPerWarp];
  split_partial(p, sm, qy, g, j0, j1, part, nh);
  for (int h = 0; h < nh; ++h) {
    float* o = p.partials + ((row * p.Hq + g * group + warp + h * kWarps) * p.n_splits + s) * (p.D + 2);
    if (lane == 0) o[0] = part[h].m, o[1] = part[h].l;
#pragma unroll
    for (int i = 0; i < kDPerLane; ++i) {
      const int64_t d = lane + 32 * i;
      if (d < p.D) o[2 + d] = part[h].acc[i];
    }
  }
}

// grid (T, Hq), one warp: folds the row's splits in increasing order, as the extend shape.
__global__ void attention_merge_kernel(AttentionParams p) {
  const int64_t row = blockIdx.x, h = blockIdx.y;
  const Query qy = find_query(p, row);
  if (qy.b < 0) return;
  const int lane = threadIdx.x;
  Partial run;
  partial_init(run);
  const int64_t last = qy.pos / p.split;
  for (int64_t s = 0; s <= last; ++s) {
    const float* o = p.partials + ((row * p.Hq + h) * p.n_splits + s) * (p.D + 2);
    float acc[kDPerLane];
#pragma unroll
    for (int i = 0; i < kDPerLane; ++i) {
      const int64_t d = lane + 32 * i;
      acc[i] = d < p.D ? o[2 + d] : 0.f;
    }
    merge_partial(run, o[0], o[1], acc);
  }
  const int64_t qo = (row * p.Hq + h) * p.D;
#pragma unroll
  for (int i = 0; i < kDPerLane; ++i) {
    const int64_t d = lane + 32 * i;
    if (d < p.D) store_f(p.out, p.t, qo + d, run.acc[i] / run.l);
  }
}

}  // namespace

int64_t attention_split_size(int64_t max_context) {
  // At most kAttnMaxSplits splits of the longest context (one tile each for contexts up to
  // kAttnTile * kAttnMaxSplits): short decode steps spread over many blocks.
  const int64_t tiles = (max_context + kAttnTile * kAttnMaxSplits - 1) / (kAttnTile * kAttnMaxSplits);
  return kAttnTile * (tiles > 1 ? tiles : 1);
}

bool attention_shape_ok(int64_t Hq, int64_t Hkv, int64_t D) {
  return Hkv > 0 && Hq % Hkv == 0 && Hq / Hkv <= kWarps * kHeadsPerWarp && D > 0 && D <= kAttnMaxHeadDim &&
         smem_bytes(D, Hq / Hkv) <= 200 * 1024;
}

void paged_attention(const AttentionParams& p, cudaStream_t s) {
  if (p.T == 0 || p.batch == 0) return;
  const size_t smem = smem_bytes(p.D, p.Hq / p.Hkv);
  static bool configured = false;  // opt in to large dynamic shared memory once (before any graph capture)
  if (!configured) {
    cudaFuncSetAttribute(attention_extend_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    cudaFuncSetAttribute(attention_split_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    configured = true;
  }
  if (p.partials) {
    attention_split_kernel<<<dim3(unsigned(p.T), unsigned(p.Hkv), unsigned(p.n_splits)), kWarps * 32, smem, s>>>(p);
    attention_merge_kernel<<<dim3(unsigned(p.T), unsigned(p.Hq)), 32, 0, s>>>(p);
  } else {
    attention_extend_kernel<<<dim3(unsigned(p.T), unsigned(p.Hkv)), kWarps * 32, smem, s>>>(p);
  }
}

}  // namespace sparrow::cuda::k
