// Paged attention on the tensor cores (bf16 K/V/q, D 64 or 128): the extend and
// decode-split shapes of attention.cu with the per-tile work on mma.sync (see below and
// docs/numerics.md); the decode-split partials are merged by attention.cu's merge kernel.
#include <cfloat>

#include "sparrow/kernels/cuda/attention_common.cuh"
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

// ---- Tensor-core path: bf16 K/V/q, D in {64, 128}, group <= kMmaMaxPairs --------------
// The same split / tile / merge structure as above, with the per-tile work on mma.sync:
// a warp owns 16 (query, head) pairs (zero rows past the block's pairs). Scores S = q K^T
// (fp32 accumulate over D in 16-wide k steps), `* scale`, masked to -inf past the pair's
// position and the split; row max over the tile (each thread's 16 values in order, then a
// quad butterfly); alpha = expf(m - m') (1 while m' is still -inf); p = expf(s - m')
// rounded to bf16; l = fmaf(l, alpha, sum of the bf16 p: each thread's in order, then the
// quad butterfly); acc = acc * alpha, then acc += P V on the tensor cores (P in bf16).
// Splits merge exactly as above (merge_partial's formula per element; the decode-split
// shape writes the same partials for attention_merge_kernel). A row's result depends only
// on its own arithmetic (mma rows are independent): the two shapes stay bit-identical, and
// a tile where a row has no valid position leaves it unchanged.
constexpr int kMmaWarps = 4, kMmaRows = 16, kMmaMaxPairs = kMmaWarps * kMmaRows, kMmaPad = 8;

// Decode-split blocks hold one query's group (<= kMaxSplitGroup pairs) and no running
// merge, so they take less shared memory and more of them fit on an SM.
constexpr int mma_q_rows(bool split) { return split ? kMaxSplitGroup : kMmaMaxPairs; }
size_t mma_smem_bytes(int64_t D, bool split) {
  const int64_t ld = D + kMmaPad;
  return size_t(2 * kAttnTile * ld + mma_q_rows(split) * ld) * 2 + (split ? 0 : size_t(kMmaMaxPairs) * size_t(D + 2) * 4) +
         kAttnTile * 4;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(f32_to_bf16_bits(lo)) | (uint32_t(f32_to_bf16_bits(hi)) << 16);
}

template <int D, bool kSplit>
__global__ void __launch_bounds__(kMmaWarps * 32) attention_mma_kernel(AttentionParams p, int64_t queries) {
  constexpr int LD = D + kMmaPad, KS = D / 16, NT = kAttnTile / 8, DT = D / 8, CH = D / 8;
  extern __shared__ __align__(16) uint16_t smem_u16[];
  uint16_t* ks = smem_u16;                                        // [kAttnTile][LD]
  uint16_t* vs = ks + kAttnTile * LD;                              // [kAttnTile][LD]
  uint16_t* qs = vs + kAttnTile * LD;                              // [mma_q_rows][LD]
  float* run = reinterpret_cast<float*>(qs + mma_q_rows(kSplit) * LD);  // extend: [kMmaMaxPairs][D + 2] (m, l, acc)
  int32_t* slot = reinterpret_cast<int32_t*>(run + (kSplit ? 0 : kMmaMaxPairs * (D + 2)));
  pdl_wait();
  pdl_launch_dependents();
  const int64_t g = blockIdx.y, group = p.Hq / p.Hkv;
  int64_t row0 = 0, nq = 1, pos0 = 0;
  const int b = block_queries<kSplit>(p, queries, row0, nq, pos0);
  if (b < 0) return;
  const int64_t last_pos = pos0 + nq - 1;
  const int64_t split = kSplit ? seq_split(p, last_pos + 1) : p.split;
  const int64_t s_begin = kSplit ? blockIdx.z : 0, s_end = kSplit ? blockIdx.z : last_pos / split;
  if (kSplit && s_begin * split > last_pos) return;
  const int32_t* r2t = p.req_to_token + int64_t(p.req_slots[b]) * p.max_context;
  const int pairs = int(nq * group), rows_used = (pairs + kMmaRows - 1) / kMmaRows * kMmaRows;
  const uint16_t* q = static_cast<const uint16_t*>(p.q);
  {  // every load of the block's q rows issued before the first store
    constexpr int kQ = mma_q_rows(kSplit) * CH / (kMmaWarps * 32);
    uint4 v[kQ];
#pragma unroll
    for (int u = 0; u < kQ; ++u) {
      const int i = threadIdx.x + u * kMmaWarps * 32, pr = i / CH, c = i - pr * CH;
      v[u] = make_uint4(0, 0, 0, 0);
      if (pr < pairs) {
        const int64_t row = row0 + pr / group, h = g * group + pr % group;
        v[u] = *reinterpret_cast<const uint4*>(q + (row * p.Hq + h) * D + c * 8);
      }
    }
#pragma unroll
    for (int u = 0; u < kQ; ++u) {
      const int i = threadIdx.x + u * kMmaWarps * 32, pr = i / CH, c = i - pr * CH;
      if (pr < rows_used) *reinterpret_cast<uint4*>(qs + pr * LD + c * 8) = v[u];
    }
  }
  if (!kSplit)
    for (int i = threadIdx.x; i < rows_used; i += blockDim.x) {
      run[i * (D + 2)] = -INFINITY;
      run[i * (D + 2) + 1] = 0.f;
      for (int d = 0; d < D; ++d) run[i * (D + 2) + 2 + d] = 0.f;
    }
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, tq = lane & 3;
  const bool active = warp * kMmaRows < pairs;  // warp-uniform
  int64_t my_pos[2];
  mma_row_positions(warp * kMmaRows, gid, pairs, group, pos0, my_pos);
  // This warp's q fragments are read from shared memory per k step (not held in registers
  // across the tile loop: fewer registers, more blocks per SM).
  const uint16_t* q0 = qs + (warp * kMmaRows + gid) * LD + 2 * tq;
  const int64_t kv_stride = p.Hkv * D;
  const uint16_t* kc = static_cast<const uint16_t*>(p.k);
  const uint16_t* vc = static_cast<const uint16_t*>(p.v);
  for (int64_t s = s_begin; s <= s_end; ++s) {
    const int64_t j0 = s * split, j_end = min(j0 + split, last_pos + 1);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[DT][4];
#pragma unroll
    for (int dn = 0; dn < DT; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.f;
    for (int64_t t0 = j0; t0 < j_end; t0 += kAttnTile) {
      const int n = int(min(int64_t(kAttnTile), j_end - t0));
      __syncthreads();  // the previous tile is no longer read
      for (int j = threadIdx.x; j < n; j += blockDim.x) slot[j] = r2t[t0 + j];
      __syncthreads();
      {  // every K/V load of the tile issued before the first store (one memory round trip)
        constexpr int kS = kAttnTile * CH / (kMmaWarps * 32);
        uint4 kv[kS], vv[kS];
#pragma unroll
        for (int u = 0; u < kS; ++u) {
          const int i = threadIdx.x + u * kMmaWarps * 32, j = i / CH, c = i - j * CH;
          kv[u] = vv[u] = make_uint4(0, 0, 0, 0);  // positions past n: zeros (masked, and 0 * V)
          if (j < n) {
            const int64_t off = int64_t(slot[j]) * kv_stride + g * D + c * 8;
            kv[u] = ldg_stream(reinterpret_cast<const uint4*>(kc + off));
            vv[u] = ldg_stream(reinterpret_cast<const uint4*>(vc + off));
          }
        }
#pragma unroll
        for (int u = 0; u < kS; ++u) {
          const int i = threadIdx.x + u * kMmaWarps * 32, j = i / CH, c = i - j * CH;
          *reinterpret_cast<uint4*>(ks + j * LD + c * 8) = kv[u];
          *reinterpret_cast<uint4*>(vs + j * LD + c * 8) = vv[u];
        }
      }
      __syncthreads();
      if (!active || !__any_sync(0xffffffffu, my_pos[0] >= t0 || my_pos[1] >= t0)) continue;
      float sc[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        const uint32_t qa[4] = {*reinterpret_cast<const uint32_t*>(q0 + kk * 16),
                                *reinterpret_cast<const uint32_t*>(q0 + 8 * LD + kk * 16),
                                *reinterpret_cast<const uint32_t*>(q0 + kk * 16 + 8),
                                *reinterpret_cast<const uint32_t*>(q0 + 8 * LD + kk * 16 + 8)};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const uint16_t* kr = ks + (nt * 8 + gid) * LD + kk * 16 + 2 * tq;
          const uint32_t kb[2] = {*reinterpret_cast<const uint32_t*>(kr), *reinterpret_cast<const uint32_t*>(kr + 8)};
          mma_bf16(sc[nt], qa, kb);
        }
      }
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1;
          const int64_t j = t0 + nt * 8 + 2 * tq + (e & 1);
          const bool valid = j <= my_pos[r] && j < j0 + split;
          sc[nt][e] = valid ? __fmul_rn(sc[nt][e], p.scale) : -INFINITY;
          mx[r] = fmaxf(mx[r], sc[nt][e]);
        }
      const float alpha[2] = {online_max_step<false>(m[0], mx[0]), online_max_step<false>(m[1], mx[1])};
      float sum[2] = {0.f, 0.f};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int r = e >> 1;
          const float pe = sc[nt][e] == -INFINITY ? 0.f : round_to(DType::kBF16, expf(sc[nt][e] - m[r]));
          sc[nt][e] = pe;
          sum[r] += pe;
        }
#pragma unroll
      for (int r = 0; r < 2; ++r) l[r] = fmaf(l[r], alpha[r], quad_sum(sum[r]));
#pragma unroll
      for (int dn = 0; dn < DT; ++dn) {
        o[dn][0] = __fmul_rn(o[dn][0], alpha[0]);
        o[dn][1] = __fmul_rn(o[dn][1], alpha[0]);
        o[dn][2] = __fmul_rn(o[dn][2], alpha[1]);
        o[dn][3] = __fmul_rn(o[dn][3], alpha[1]);
      }
#pragma unroll
      for (int k2 = 0; k2 < kAttnTile / 16; ++k2) {
        const uint32_t pa[4] = {pack_bf16(sc[2 * k2][0], sc[2 * k2][1]), pack_bf16(sc[2 * k2][2], sc[2 * k2][3]),
                                pack_bf16(sc[2 * k2 + 1][0], sc[2 * k2 + 1][1]),
                                pack_bf16(sc[2 * k2 + 1][2], sc[2 * k2 + 1][3])};
        const uint16_t* v0 = vs + (k2 * 16 + 2 * tq) * LD + gid;
#pragma unroll
        for (int dn = 0; dn < DT; ++dn) {
          const uint16_t* vr = v0 + dn * 8;
          const uint32_t vb[2] = {uint32_t(vr[0]) | (uint32_t(vr[LD]) << 16),
                                  uint32_t(vr[8 * LD]) | (uint32_t(vr[9 * LD]) << 16)};
          mma_bf16(o[dn], pa, vb);
        }
      }
    }
    if (!active) continue;
    // This split's partials of the thread's two rows (a quad shares a row, each thread its
    // columns): decode-split writes them; extend merges them into run (merge_partial's
    // formula), reading run's m before any thread of the quad rewrites it.
    bool mine[2];
    float ra[2], rb[2], rm_new[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mine[r] = my_pos[r] >= j0;  // a pair, and the split does not lie past its query
      const int pr = warp * kMmaRows + gid + 8 * r;
      if (kSplit) {
        if (!mine[r]) continue;
        const int64_t row = row0 + pr / group, h = g * group + pr % group;
        float* out = p.partials + ((row * p.Hq + h) * p.n_splits + s_begin) * (D + 2);
        if (tq == 0) out[0] = m[r], out[1] = l[r];
#pragma unroll
        for (int dn = 0; dn < DT; ++dn) {
          out[2 + dn * 8 + 2 * tq] = o[dn][2 * r];
          out[2 + dn * 8 + 2 * tq + 1] = o[dn][2 * r + 1];
        }
      } else if (mine[r]) {
        const float rm = run[pr * (D + 2)];
        rm_new[r] = fmaxf(rm, m[r]);
        ra[r] = expf(rm - rm_new[r]);
        rb[r] = expf(m[r] - rm_new[r]);
      }
    }
    if (kSplit) continue;
    __syncwarp();
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (!mine[r]) continue;
      float* ru = run + (warp * kMmaRows + gid + 8 * r) * (D + 2);
#pragma unroll
      for (int dn = 0; dn < DT; ++dn)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& acc = ru[2 + dn * 8 + 2 * tq + e];
          acc = fmaf(acc, ra[r], __fmul_rn(o[dn][2 * r + e], rb[r]));
        }
      if (tq == 0) {
        ru[1] = fmaf(ru[1], ra[r], __fmul_rn(l[r], rb[r]));
        ru[0] = rm_new[r];
      }
    }
    __syncwarp();
  }
  if (kSplit || !active) return;
  __syncwarp();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (my_pos[r] < 0) continue;
    const int pr = warp * kMmaRows + gid + 8 * r;
    const int64_t row = row0 + pr / group, h = g * group + pr % group;
    const float* ru = run + pr * (D + 2);
    const int64_t qo = (row * p.Hq + h) * D;
#pragma unroll
    for (int dn = 0; dn < DT; ++dn)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int d = dn * 8 + 2 * tq + e;
        store_f(p.out, p.t, qo + d, ru[2 + d] / ru[1]);
      }
  }
}

template <int D>
void launch_mma(const AttentionParams& p, cudaStream_t s) {
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured)) {
    cudaFuncSetAttribute(attention_mma_kernel<D, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(mma_smem_bytes(D, false)));
    cudaFuncSetAttribute(attention_mma_kernel<D, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(mma_smem_bytes(D, true)));
  }
  const int64_t group = p.Hq / p.Hkv;
  if (p.partials) {
    launch_pdl(attention_mma_kernel<D, true>, dim3(unsigned(p.T), unsigned(p.Hkv), decode_grid_splits(p)),
               dim3(kMmaWarps * 32), mma_smem_bytes(D, true), s, p, int64_t(1));
    attention_merge(p, s);
  } else {
    const int64_t q = kMmaMaxPairs / group;
    launch_pdl(attention_mma_kernel<D, false>, dim3(unsigned(p.T / q + p.batch), unsigned(p.Hkv)), dim3(kMmaWarps * 32),
               mma_smem_bytes(D, false), s, p, q);
  }
}

}  // namespace

bool attention_mma_path(const AttentionParams& p) {
  return p.t == DType::kBF16 && (p.D == 64 || p.D == 128) && p.Hq / p.Hkv <= kMaxSplitGroup;
}

void paged_attention_mma(const AttentionParams& p, cudaStream_t s) {
  if (p.D == 64) launch_mma<64>(p, s);
  else launch_mma<128>(p, s);
}

}  // namespace sparrow::cuda::k
