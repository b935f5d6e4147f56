// Paged causal GQA attention through req_to_token: one arithmetic, two launch shapes. This
// file holds the fp32 SIMT kernels (any head dim, f32 / bf16 / f16) and the decode-split
// merge; bf16 models with D 64 or 128 take the tensor-core kernels of attention_mma.cu,
// the same structure with the per-tile work on mma.sync (paged_attention picks by shape).
//
// The keys of a query at absolute position p are cut into fixed splits of S absolute
// positions ([sS, sS+S) clipped to [0, p]; S from the engine's max context only), each
// split into tiles of kAttnTile positions. A split's partial (m, l, acc) is an online
// softmax over its tiles in increasing order (tile_update); partials are merged in
// increasing split order (merge_partial). Both launch shapes run exactly this arithmetic
// per (query, head) pair, through the same device functions with explicit fmaf /
// __fmul_rn / __fadd_rn, so a query's result depends only on (p, q, K/V at positions <= p,
// S): batch invariant, and the same whether its step was an extend or a decode.
//   * extend shape: block = (up to kMaxPairs / group consecutive queries of one sequence,
//     KV head); each K/V tile is staged once in shared memory (fp32) and used by every
//     (query, head) pair of the block; splits are walked in order and merged in the block.
//   * decode-split shape (T == batch, scratch given): block = (row, KV head, split)
//     writes its pairs' partials to scratch; merge_kernel folds them per (row, head).
// Warp w owns pairs w, w + kWarps, w + 2 kWarps, ... (pair = query * group + head), so a
// block with few pairs (a decode query's group) still spreads them over its warps.
// Lane l scores positions l and l+32 of a tile (four interleaved fp32 partial dot products
// over D, combined pairwise, * scale); tile max / sum are warp butterflies; lane l owns head
// dims l, l+32, ... of acc and adds p_j * v_j in increasing j.
#include <cfloat>

#include "sparrow/kernels/cuda/attention_common.cuh"
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

// Extend blocks: 16 warps; decode-split blocks: 8 (their pairs are one query's group, and
// smaller blocks keep more of them resident per SM at large batches). The warp count only
// maps pairs to warps: the arithmetic of a pair is the same.
constexpr int kPairsPerWarp = 4;
constexpr int kExtendWarps = 16, kSplitWarps = 8;
constexpr int kMaxPairs = kExtendWarps * kPairsPerWarp;   // (query, head) pairs of an extend block
static_assert(kMaxSplitGroup == kSplitWarps * kPairsPerWarp, "heads per KV head a decode block takes");
static_assert(kAttnTile == 64, "two positions per lane");

template <int DPL>  // head dims per lane: D <= 32 * DPL
struct Partial {
  float m, l;
  float acc[DPL];
};

template <int DPL>
__device__ __forceinline__ void partial_init(Partial<DPL>& s) {
  s.m = -INFINITY;
  s.l = 0.f;
#pragma unroll
  for (int i = 0; i < DPL; ++i) s.acc[i] = 0.f;
}

// run = run (+) part, softmax-merged (run may be empty: m = -inf gives a = 0 exactly).
template <int DPL>
__device__ __forceinline__ void merge_partial(Partial<DPL>& run, float pm, float pl, const float* pacc) {
  const float m_new = fmaxf(run.m, pm);
  const float a = expf(run.m - m_new), b = expf(pm - m_new);
  run.l = fmaf(run.l, a, __fmul_rn(pl, b));
#pragma unroll
  for (int i = 0; i < DPL; ++i) run.acc[i] = fmaf(run.acc[i], a, __fmul_rn(pacc[i], b));
  run.m = m_new;
}

// One tile of `n` staged positions into a pair's split partial.
template <int DPL>
__device__ __forceinline__ void tile_update(Partial<DPL>& ps, const float* q, const float* ks, const float* vs, int n,
                                            int D, float scale, int lane) {
  float s[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int j = half * 32 + lane;
    s[half] = -INFINITY;
    if (j < n) {
      const float* kr = ks + j * (D + 1);
      float d4[4] = {0.f, 0.f, 0.f, 0.f};
      int d = 0;
      for (; d + 4 <= D; d += 4) {
#pragma unroll
        for (int u = 0; u < 4; ++u) d4[u] = fmaf(q[d + u], kr[d + u], d4[u]);
      }
      for (; d < D; ++d) d4[d & 3] = fmaf(q[d], kr[d], d4[d & 3]);
      s[half] = __fmul_rn(__fadd_rn(__fadd_rn(d4[0], d4[1]), __fadd_rn(d4[2], d4[3])), scale);
    }
  }
  const float m_new = fmaxf(ps.m, warp_max(fmaxf(s[0], s[1])));
  const float alpha = expf(ps.m - m_new);  // -inf on the split's first tile: alpha = 0
  float pj[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) pj[half] = s[half] == -INFINITY ? 0.f : expf(s[half] - m_new);
  ps.l = fmaf(ps.l, alpha, warp_sum(pj[0] + pj[1]));
  ps.m = m_new;
  float a[DPL];
#pragma unroll
  for (int i = 0; i < DPL; ++i) a[i] = __fmul_rn(ps.acc[i], alpha);
  for (int j = 0; j < n; ++j) {
    const float pv = __shfl_sync(0xffffffffu, j < 32 ? pj[0] : pj[1], j & 31);
    const float* vr = vs + j * D + lane;
#pragma unroll
    for (int i = 0; i < DPL; ++i)
      if (lane + 32 * i < D) a[i] = fmaf(pv, vr[32 * i], a[i]);
  }
#pragma unroll
  for (int i = 0; i < DPL; ++i) ps.acc[i] = a[i];
}

struct Smem {
  float* k;       // [kAttnTile][D + 1] (+1: lanes reading different rows hit different banks)
  float* v;       // [kAttnTile][D]
  float* q;       // [pairs][D]
  int32_t* slot;  // [kAttnTile]
};

__device__ __forceinline__ Smem carve(float* base, int D, int pairs) {
  Smem s;
  s.k = base;
  s.v = s.k + kAttnTile * (D + 1);
  s.q = s.v + kAttnTile * D;
  s.slot = reinterpret_cast<int32_t*>(s.q + pairs * D);
  return s;
}

size_t smem_bytes(int64_t D, int64_t pairs) {
  return size_t(kAttnTile * (D + 1) + kAttnTile * D + pairs * D + kAttnTile) * 4;
}
int64_t queries_per_block(int64_t group) { return group >= kMaxPairs ? 1 : kMaxPairs / group; }

// Positions [t0, t0 + n) of sequence row r2t, KV head g: slots, then K and V rows (fp32).
__device__ void stage_tile(const AttentionParams& p, const Smem& sm, const int32_t* r2t, int64_t g, int64_t t0, int n) {
  const int D = int(p.D);
  const int64_t kv_stride = p.Hkv * p.D;
  __syncthreads();  // the previous tile's rows are no longer read
  for (int j = threadIdx.x; j < n; j += blockDim.x) sm.slot[j] = r2t[t0 + j];
  __syncthreads();
  if (p.t == DType::kBF16 && D % 8 == 0) {
    const int chunks = D / 8;
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
    for (int c = threadIdx.x; c < n * D; c += blockDim.x) {
      const int j = c / D, d = c - j * D;
      const int64_t off = int64_t(sm.slot[j]) * kv_stride + g * D + d;
      sm.k[j * (D + 1) + d] = load_f(p.k, p.t, off);
      sm.v[j * D + d] = load_f(p.v, p.t, off);
    }
  }
  __syncthreads();
}

// kSplit = false: extend shape, grid (query chunks, Hkv). kSplit = true: decode-split
// shape, grid (T, Hkv, n_splits), one query per block, one split per block.
template <int DPL, bool kSplit, int kWarps = kSplit ? kSplitWarps : kExtendWarps>
__global__ void __launch_bounds__(kWarps * 32, kSplit ? 2 : 1) attention_kernel(AttentionParams p, int64_t queries) {
  extern __shared__ float smem_raw[];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t g = blockIdx.y, group = p.Hq / p.Hkv;
  const int D = int(p.D);
  int64_t row0 = 0, nq = 1, pos0 = 0;
  const int b = block_queries<kSplit>(p, queries, row0, nq, pos0);
  if (b < 0) return;
  const int64_t last_pos = pos0 + nq - 1;
  const int32_t* r2t = p.req_to_token + int64_t(p.req_slots[b]) * p.max_context;
  const int pairs = int(nq * group);
  const Smem sm = carve(smem_raw, D, pairs);
  for (int i = threadIdx.x; i < pairs * D; i += blockDim.x) {
    const int pr = i / D, d = i - pr * D;
    const int64_t row = row0 + pr / group, h = g * group + pr % group;
    sm.q[i] = load_f(p.q, p.t, (row * p.Hq + h) * D + d);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  Partial<DPL> run[kPairsPerWarp], part[kPairsPerWarp];
  int64_t my_pos[kPairsPerWarp];
#pragma unroll
  for (int u = 0; u < kPairsPerWarp; ++u) {
    const int pr = u * kWarps + warp;
    my_pos[u] = pr < pairs ? pos0 + pr / group : -1;  // -1: no pair here
    partial_init(run[u]);
  }
  const int64_t split = kSplit ? seq_split(p, last_pos + 1) : p.split;
  const int64_t s_begin = kSplit ? blockIdx.z : 0, s_end = kSplit ? blockIdx.z : last_pos / split;
  if (kSplit && s_begin * split > last_pos) return;
  for (int64_t s = s_begin; s <= s_end; ++s) {
    const int64_t j0 = s * split, j1_block = min(j0 + split, last_pos + 1);
#pragma unroll
    for (int u = 0; u < kPairsPerWarp; ++u) partial_init(part[u]);
    for (int64_t t0 = j0; t0 < j1_block; t0 += kAttnTile) {
      stage_tile(p, sm, r2t, g, t0, int(min(int64_t(kAttnTile), j1_block - t0)));
#pragma unroll
      for (int u = 0; u < kPairsPerWarp; ++u) {
        if (my_pos[u] < t0) continue;  // no pair, or all of this tile lies past the query
        const int64_t j1 = min(j0 + split, my_pos[u] + 1);
        const int n = int(min(int64_t(kAttnTile), j1 - t0));
        tile_update(part[u], sm.q + (u * kWarps + warp) * D, sm.k, sm.v, n, D, p.scale, lane);
      }
    }
    if constexpr (!kSplit) {
#pragma unroll
      for (int u = 0; u < kPairsPerWarp; ++u)
        if (my_pos[u] >= j0) merge_partial(run[u], part[u].m, part[u].l, part[u].acc);
    }
  }
#pragma unroll
  for (int u = 0; u < kPairsPerWarp; ++u) {
    if (my_pos[u] < 0) continue;
    const int pr = u * kWarps + warp;
    const int64_t row = row0 + pr / group, h = g * group + pr % group;
    if (kSplit) {
      float* o = p.partials + ((row * p.Hq + h) * p.n_splits + s_begin) * (p.D + 2);
      if (lane == 0) o[0] = part[u].m, o[1] = part[u].l;
#pragma unroll
      for (int i = 0; i < DPL; ++i)
        if (lane + 32 * i < D) o[2 + lane + 32 * i] = part[u].acc[i];
    } else {
      const int64_t qo = (row * p.Hq + h) * D;
#pragma unroll
      for (int i = 0; i < DPL; ++i)
        if (lane + 32 * i < D) store_f(p.out, p.t, qo + lane + 32 * i, run[u].acc[i] / run[u].l);
    }
  }
}

// grid (T, Hq), one warp: folds the row's splits in increasing order, as the extend shape.
// The loads of kMergeBatch splits are issued before the first of them is folded: one memory
// round trip per batch, not per split (a context has up to 128 splits in the default mode;
// the fold order and arithmetic are unchanged).
constexpr int kMergeBatch = 8;
template <int DPL>
__global__ void attention_merge_kernel(AttentionParams p) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t row = blockIdx.x, h = blockIdx.y;
  int64_t pos = 0;
  if (find_seq(p, row, pos) < 0) return;
  const int lane = threadIdx.x, D = int(p.D);
  Partial<DPL> run;
  partial_init(run);
  const int64_t splits = pos / seq_split(p, pos + 1) + 1;
  const float* base = p.partials + (row * p.Hq + h) * p.n_splits * (p.D + 2);
  for (int64_t s0 = 0; s0 < splits; s0 += kMergeBatch) {
    float pm[kMergeBatch], pl[kMergeBatch], acc[kMergeBatch][DPL];
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      if (s0 + u >= splits) break;
      const float* o = base + (s0 + u) * (p.D + 2);
      pm[u] = o[0];
      pl[u] = o[1];
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[u][i] = lane + 32 * i < D ? o[2 + lane + 32 * i] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kMergeBatch; ++u) {
      if (s0 + u >= splits) break;
      merge_partial(run, pm[u], pl[u], acc[u]);
    }
  }
  const int64_t qo = (row * p.Hq + h) * D;
#pragma unroll
  for (int i = 0; i < DPL; ++i)
    if (lane + 32 * i < D) store_f(p.out, p.t, qo + lane + 32 * i, run.acc[i] / run.l);
}

template <int DPL>
void launch(const AttentionParams& p, cudaStream_t s) {
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured)) {
    cudaFuncSetAttribute(attention_kernel<DPL, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    cudaFuncSetAttribute(attention_kernel<DPL, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
  }
  const int64_t group = p.Hq / p.Hkv;
  if (p.partials) {
    launch_pdl(attention_kernel<DPL, true>, dim3(unsigned(p.T), unsigned(p.Hkv), decode_grid_splits(p)),
               dim3(kSplitWarps * 32), smem_bytes(p.D, group), s, p, int64_t(1));
    attention_merge(p, s);
  } else {
    const int64_t q = queries_per_block(group);
    // Chunks never straddle sequences: at most T / q + batch of them.
    launch_pdl(attention_kernel<DPL, false>, dim3(unsigned(p.T / q + p.batch), unsigned(p.Hkv)),
               dim3(kExtendWarps * 32), smem_bytes(p.D, q * group), s, p, q);
  }
}

}  // namespace

void attention_merge(const AttentionParams& p, cudaStream_t s) {
  const dim3 grid(unsigned(p.T), unsigned(p.Hq));
  if (p.D <= 32) launch_pdl(attention_merge_kernel<1>, grid, dim3(32), 0, s, p);
  else if (p.D <= 64) launch_pdl(attention_merge_kernel<2>, grid, dim3(32), 0, s, p);
  else if (p.D <= 128) launch_pdl(attention_merge_kernel<4>, grid, dim3(32), 0, s, p);
  else launch_pdl(attention_merge_kernel<8>, grid, dim3(32), 0, s, p);
}

int32_t attention_decode_splits(int64_t batch, int64_t Hkv) {
  // ~2048 blocks: a decode block computes one query's group (one warp's mma rows), so
  // several per SM hide each other's latency; short contexts leave the extra splits empty.
  constexpr int64_t kTargetBlocks = 2048;
  const int64_t want = (kTargetBlocks + batch * Hkv - 1) / (batch * Hkv);
  return int32_t(want < 1 ? 1 : want > kAttnMaxDynSplits ? kAttnMaxDynSplits : want);
}

int64_t attention_split_size(int64_t max_context) {
  // At most kAttnMaxSplits splits of the longest context (one tile each for contexts up to
  // kAttnTile * kAttnMaxSplits): short decode steps spread over many blocks.
  const int64_t tiles = (max_context + kAttnTile * kAttnMaxSplits - 1) / (kAttnTile * kAttnMaxSplits);
  return kAttnTile * (tiles > 1 ? tiles : 1);
}

bool attention_shape_ok(int64_t Hq, int64_t Hkv, int64_t D) {
  if (Hkv <= 0 || Hq % Hkv != 0 || D <= 0 || D > kAttnMaxHeadDim) return false;
  const int64_t group = Hq / Hkv;
  return group <= kMaxSplitGroup && smem_bytes(D, queries_per_block(group) * group) <= 200 * 1024;
}

void paged_attention(const AttentionParams& p, cudaStream_t s) {
  if (p.T == 0 || p.batch == 0) return;
  if (attention_mma_path(p)) return paged_attention_mma(p, s);  // a shape property: every step of a model takes one path
  if (p.D <= 32) launch<1>(p, s);
  else if (p.D <= 64) launch<2>(p, s);
  else if (p.D <= 128) launch<4>(p, s);
  else launch<8>(p, s);
}

}  // namespace sparrow::cuda::k
