// Paged causal GQA attention, extend shape, default mode only: the FlashAttention-2 shape
// on mma.sync. attention_mma.cu's extend kernel keeps the split structure of the decode
// path (a query's keys cut into splits of S positions, each split's partial merged into a
// running state in shared memory) so that an extend and a decode give the same bits; with
// contexts up to 2048 a split is one 64-position tile, so every tile ends in that merge
// (docs/gpu.md, "Next": 690 us per layer at 4096 tokens of 1024-token prompts). Outside
// deterministic mode nothing asks for that bit-identity, and this kernel walks a block's
// whole context as one split: (m, l, acc) stay in registers from the first tile to the
// last, no per-tile merge, no mask on tiles wholly below the block's first query, exp2
// with the log2(e) scale folded into the score scale.
//
// Block = (up to kFPairs / group consecutive queries of one sequence, KV head), 4 warps of
// 16 (query, head) pairs; K/V tiles of kAttnTile positions double-buffered through cp.async
// (tile t + 1 in flight while tile t is multiplied); fragments by ldmatrix. P is rounded to
// bf16 before P V (and l sums the rounded values), as in attention_mma.cu.
#include <cfloat>

#include "sparrow/kernels/cuda/attention_common.cuh"
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kFWarps = 4, kFRows = 16, kFPairs = kFWarps * kFRows, kFPad = 8;
constexpr float kLog2e = 1.4426950408889634f;

size_t flash_smem_bytes(int64_t D) { return size_t(kFPairs + 4 * kAttnTile) * size_t(D + kFPad) * 2; }

template <int D>
__global__ void __launch_bounds__(kFWarps * 32) attention_flash_kernel(AttentionParams p, int64_t queries) {
  constexpr int LD = D + kFPad, KS = D / 16, NT = kAttnTile / 8, DT = D / 8, CH = D / 8;
  constexpr int kThreads = kFWarps * 32, kS = kAttnTile * CH / kThreads;
  static_assert(KS % 2 == 0 && DT % 2 == 0 && kS >= 1, "x4 ldmatrix pairs");
  extern __shared__ __align__(16) uint16_t smem_f[];
  uint16_t* qs = smem_f;                     // [kFPairs][LD]
  uint16_t* ks = qs + kFPairs * LD;          // [2][kAttnTile][LD]
  uint16_t* vs = ks + 2 * kAttnTile * LD;    // [2][kAttnTile][LD]
  pdl_wait();
  pdl_launch_dependents();
  const int64_t g = blockIdx.y, group = p.Hq / p.Hkv;
  int64_t row0 = 0, nq = 1, pos0 = 0;
  const int b = block_queries<false>(p, queries, row0, nq, pos0, /*heavy_first=*/true);
  if (b < 0) return;
  const int64_t last_pos = pos0 + nq - 1;
  const int32_t* r2t = p.req_to_token + int64_t(p.req_slots[b]) * p.max_context;
  const int pairs = int(nq * group);
  const int tid = threadIdx.x;

  // ---- K/V tiles: thread tid copies chunk c = tid % CH of tile rows tid / CH + (kThreads /
  // CH) u; the slots of the tile after next are read into registers while one is multiplied.
  const int64_t kv_stride = p.Hkv * D;
  const uint16_t* kc = static_cast<const uint16_t*>(p.k);
  const uint16_t* vc = static_cast<const uint16_t*>(p.v);
  const auto read_slots = [&](int64_t t0, int32_t* sl) {
#pragma unroll
    for (int u = 0; u < kS; ++u) {
      const int64_t j = t0 + (tid + u * kThreads) / CH;
      sl[u] = t0 >= 0 && j <= last_pos ? r2t[j] : 0;
    }
  };
  const auto copy_tile = [&](int64_t t0, const int32_t* sl, int buf) {
#pragma unroll
    for (int u = 0; u < kS; ++u) {
      const int i = tid + u * kThreads, j = i / CH, c = i - j * CH;
      const bool ok = t0 + j <= last_pos;  // past the context: zeros (masked, and 0 * V)
      const int64_t off = int64_t(sl[u]) * kv_stride + g * D + c * 8;
      cp_async16(smem_u32(ks + (buf * kAttnTile + j) * LD + c * 8), ok ? kc + off : kc, ok);
      cp_async16(smem_u32(vs + (buf * kAttnTile + j) * LD + c * 8), ok ? vc + off : vc, ok);
    }
    cp_async_commit();
  };
  const int ntiles = int(last_pos / kAttnTile) + 1;
  int32_t next_slot[kS];
  {
    int32_t sl[kS];
    read_slots(0, sl);
    copy_tile(0, sl, 0);
    read_slots(ntiles > 1 ? int64_t(kAttnTile) : -1, next_slot);
  }
  // ---- q rows of the block's pairs (zeros past them)
  const uint16_t* q = static_cast<const uint16_t*>(p.q);
  for (int i = tid; i < kFPairs * CH; i += kThreads) {
    const int pr = i / CH, c = i - pr * CH;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (pr < pairs) {
      const int64_t row = row0 + pr / group, h = g * group + pr % group;
      v = *reinterpret_cast<const uint4*>(q + (row * p.Hq + h) * D + c * 8);
    }
    *reinterpret_cast<uint4*>(qs + pr * LD + c * 8) = v;
  }

  const int lane = tid & 31, warp = tid >> 5, gid = lane >> 2, tq = lane & 3;
  const bool active = warp * kFRows < pairs;  // warp-uniform
  int64_t my_pos[2];
  mma_row_positions(warp * kFRows, gid, pairs, group, pos0, my_pos);
  // Tiles wholly at or below the warp's first query need no mask; tiles past its last
  // query add nothing.
  const int64_t w_min = pos0 + (warp * kFRows) / group;
  const int64_t w_max = active ? pos0 + min(warp * kFRows + kFRows - 1, pairs - 1) / group : -1;
  const uint16_t* q_lm = qs + (warp * kFRows + (lane & 15)) * LD + (lane >> 4) * 8;  // this lane's ldmatrix row
  const float sl2 = p.scale * kLog2e;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[DT][4];
#pragma unroll
  for (int dn = 0; dn < DT; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.f;

  for (int t = 0; t < ntiles; ++t) {
    const int64_t t0 = int64_t(t) * kAttnTile;
    cp_async_wait<0>();  // this thread's copies of tile t
    __syncthreads();  // everyone's (and the q rows); the other buffer (tile t - 1) is no longer read
    if (t + 1 < ntiles) copy_tile(t0 + kAttnTile, next_slot, (t + 1) & 1);
    read_slots(t + 2 < ntiles ? t0 + 2 * kAttnTile : -1, next_slot);
    if (!active || t0 > w_max) continue;
    const uint16_t* kt = ks + (t & 1) * kAttnTile * LD;
    const uint16_t* vt = vs + (t & 1) * kAttnTile * LD;

    // S = q K^T (fp32): x4 ldmatrix of q per k step, of K for two k steps of one n8 tile.
    float sc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; kk += 2) {
      uint32_t qa[2][4];
      ldmatrix_x4(qa[0], smem_u32(q_lm + kk * 16));
      ldmatrix_x4(qa[1], smem_u32(q_lm + (kk + 1) * 16));
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        uint32_t kb[4];
        ldmatrix_x4(kb, smem_u32(kt + (nt * 8 + (lane & 7)) * LD + kk * 16 + (lane >> 3) * 8));
        mma_bf16(sc[nt], qa[0], kb);
        mma_bf16(sc[nt], qa[1], kb + 2);
      }
    }
    // Scores in log2 units; causal mask only where the tile reaches past the warp's first query.
    const bool diag = t0 + kAttnTile - 1 > w_min;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        float s = sc[nt][e] * sl2;
        if (diag && t0 + nt * 8 + 2 * tq + (e & 1) > my_pos[r]) s = -INFINITY;
        sc[nt][e] = s;
        mx[r] = fmaxf(mx[r], s);
      }
    const float alpha[2] = {online_max_step<true>(m[0], mx[0]), online_max_step<true>(m[1], mx[1])};
    float sum[2] = {0.f, 0.f};
    // P = exp2(s - m); a row that has seen no key yet (m still -inf: only rows past the
    // block's queries) takes m = 0, so exp2(-inf) = 0 and nothing is NaN.
    const float m0[2] = {m[0] == -INFINITY ? 0.f : m[0], m[1] == -INFINITY ? 0.f : m[1]};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[nt][e] = exp2f(sc[nt][e] - m0[e >> 1]);
#pragma unroll
    for (int dn = 0; dn < DT; ++dn) {
      o[dn][0] *= alpha[0];
      o[dn][1] *= alpha[0];
      o[dn][2] *= alpha[1];
      o[dn][3] *= alpha[1];
    }
    // acc += P V: P's C fragments, rounded to bf16 in pairs (one cvt each), are the A
    // fragments of the next mma, and l sums the rounded values; V by transposing ldmatrix,
    // two n8 tiles (dn, dn + 1) at a time.
#pragma unroll
    for (int k2 = 0; k2 < kAttnTile / 16; ++k2) {
      uint32_t pa[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float* pp = sc[2 * k2 + (i >> 1)] + 2 * (i & 1);
        const __nv_bfloat162 h2 = __floats2bfloat162_rn(pp[0], pp[1]);
        pa[i] = *reinterpret_cast<const uint32_t*>(&h2);
        sum[i & 1] += __uint_as_float(pa[i] << 16);
        sum[i & 1] += __uint_as_float(pa[i] & 0xffff0000u);
      }
      const uint16_t* v0 = vt + (k2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
      for (int dn = 0; dn < DT; dn += 2) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, smem_u32(v0 + dn * 8));
        mma_bf16(o[dn], pa, vb);
        mma_bf16(o[dn + 1], pa, vb + 2);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = fmaf(l[r], alpha[r], quad_sum(sum[r]));
  }
  cp_async_wait<0>();
  if (!active) return;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (my_pos[r] < 0) continue;
    const int pr = warp * kFRows + gid + 8 * r;
    const int64_t row = row0 + pr / group, h = g * group + pr % group;
    const int64_t qo = (row * p.Hq + h) * D;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int dn = 0; dn < DT; ++dn)
#pragma unroll
      for (int e = 0; e < 2; ++e) store_f(p.out, p.t, qo + dn * 8 + 2 * tq + e, o[dn][2 * r + e] * inv);
  }
}

template <int D>
void launch_flash(const AttentionParams& p, cudaStream_t s) {
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured))
    cudaFuncSetAttribute(attention_flash_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(flash_smem_bytes(D)));
  const int64_t q = kFPairs / (p.Hq / p.Hkv);
  launch_pdl(attention_flash_kernel<D>, dim3(unsigned(p.T / q + p.batch), unsigned(p.Hkv)), dim3(kFWarps * 32),
             flash_smem_bytes(D), s, p, q);
}

}  // namespace

bool attention_flash_ok(const AttentionParams& p) {
  return p.partials == nullptr && p.t == DType::kBF16 && (p.D == 64 || p.D == 128) && p.Hkv > 0 &&
         p.Hq / p.Hkv <= kFPairs;
}

void paged_attention_flash(const AttentionParams& p, cudaStream_t s) {
  if (p.T == 0 || p.batch == 0) return;
  if (p.D == 64) launch_flash<64>(p, s);
  else launch_flash<128>(p, s);
}

}  // namespace sparrow::cuda::k
