// The two MoE expert GEMMs of the default mode on Hopper's warpgroup MMA (wgmma, sm_90a):
// the contract of gemm.cu's kMoeGateUp / kMoeDown modes (grouped row tiles from moe_group,
// gathered A rows, the SiLU-mul and routing-weight epilogues), shaped for prefill-sized
// batches, where gemm.cu's 64 x 64 tiles leave the kernel bound by L2 bandwidth (each
// weight tile re-read once per 64 rows, each A tile once per 64 columns).
//
// A CTA is kWG warpgroups over one row tile of up to 64 kWG rows (one expert) and kBN
// columns; warpgroup w multiplies rows [64 w, 64 w + 64) against the B tile all of them
// share, straight from shared memory (wgmma reads both operands there). kStages-deep
// cp.async ring of the A rows and the B tile in the 128-byte swizzle layout (wgmma.cuh);
// loads run kStages - 1 K-tiles ahead and each K-tile's wgmma group is waited for before
// the next barrier, so the stage a load overwrites (read by the previous K-tile's group)
// is free. (Leaving one group running across the barrier and loading one K-tile less
// ahead was measured slower: docs/gpu.md.) Out-of-range rows / K are zero-filled, as in
// gemm.cu.
//
// Numerics: fp32 accumulation over K in 16-wide steps, like gemm.cu, but the tensor core's
// order of adding inside a step is not promised to match mma.sync's: this kernel serves the
// default mode only (ops_cuda.cpp picks it); deterministic mode keeps gemm.cu everywhere.
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"
#include "sparrow/kernels/cuda/wgmma.cuh"

namespace sparrow::cuda::k {
namespace {

constexpr int BM = 64, BK = 64;  // rows per warpgroup, K per stage

template <int kBN, int kWG, int kStages>
constexpr size_t smem_bytes() {
  return size_t(kStages) * size_t(kWG * BM + kBN) * BK * sizeof(uint16_t) + 1024;  // + alignment slack
}

// Byte offset of 16-byte chunk `chunk` of tile row `row` (128-byte swizzle).
__device__ __forceinline__ uint32_t swz_bytes(int row, int chunk) { return uint32_t(row * 128 + ((chunk ^ (row & 7)) << 4)); }


template <int kBN>
__device__ __forceinline__ void wgmma_tile(float* acc, uint64_t da, uint64_t db) {
  if constexpr (kBN == 256) wgmma_m64n256k16(acc, da, db);
  else wgmma_m64n128k16(acc, da, db);
}

// CTA: kWG warpgroups; warpgroup w owns rows [64 w, 64 w + 64) of a row tile of up to
// 64 kWG rows (one expert), all of them the same kBN columns: one B tile in shared memory
// serves every warpgroup, so each weight byte crosses from L2 once per row tile.
template <GemmMode kMode, int kBN, int kWG, int kStages>
__global__ void __launch_bounds__(128 * kWG, 1) gemm_wgmma_kernel(const GemmParams p) {
  static_assert(kMode != GemmMode::kDense, "MoE modes only");
  static_assert(kBN == 128 || kBN == 256, "wgmma N of 128 or 256");
  static_assert(kStages >= 2, "a K-tile multiplied while the next ones load");
  constexpr int kThreads = 128 * kWG;
  constexpr int kAhead = kStages - 1;  // K-tiles loaded ahead of the one multiplied
  constexpr uint32_t kATile = kWG * BM * BK * 2, kBTile = kBN * BK * 2;  // bytes per stage
  constexpr int kBChunks = kBN * 8, kBIters = (kBChunks + kThreads - 1) / kThreads;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;  // swizzle atoms need 1024-byte alignment
  const uint32_t sA = base, sB = base + kStages * kATile;

  // PDL as in gemm.cu: gate_up waits first (the tile list comes from moe_group just
  // before it); down streams its first weight stages before waiting for gate_up's act.
  if constexpr (kMode == GemmMode::kMoeGateUp) {
    pdl_wait();
    pdl_launch_dependents();
  }
  if (int(blockIdx.y) >= *p.num_tiles) return;
  const int32_t* t = p.tiles + 3 * blockIdx.y;
  const uint16_t* b = p.b + int64_t(t[0]) * p.b_expert_stride;
  const int64_t row0 = t[1], row1 = t[2];
  const int64_t n_half = p.N / 2;  // gate_up: I
  const int64_t n0 = kMode == GemmMode::kMoeGateUp ? int64_t(blockIdx.x) * (kBN / 2) : int64_t(blockIdx.x) * kBN;

  // ---- loader. Thread tid moves 16-byte chunk (tid % 8) of A rows tid / 8 + 48 i ... of
  // its warpgroup's 64 and of B rows tid / 8 + (kThreads / 8) i.
  const int tid = threadIdx.x, wg = tid >> 7, chunk = tid & 7;
  const int a_lo = (tid & 127) >> 3;
  const uint16_t* a_src[4];
  bool a_ok[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + wg * BM + a_lo + 16 * i;
    a_ok[i] = r < row1;
    int64_t arow = a_ok[i] ? r : row0;
    if constexpr (kMode == GemmMode::kMoeGateUp) arow = p.a_gather[arow] / p.a_gather_div;
    a_src[i] = p.a + arow * p.lda + chunk * 8;
  }
  // B tile row c. gate_up: column c holds n = n0 + (c / 16) * 8 + c % 8 of the gate half
  // when (c / 8) is even, of the up half when odd (so a thread's accumulators hold gate and
  // up of the same n). down: n = n0 + c.
  const uint16_t* b_src[kBIters];
  bool b_ok[kBIters];
#pragma unroll
  for (int i = 0; i < kBIters; ++i) {
    const int c = (tid >> 3) + (kThreads / 8) * i;
    int64_t brow;
    if constexpr (kMode == GemmMode::kMoeGateUp) {
      const int64_t n = n0 + (c >> 4) * 8 + (c & 7);
      b_ok[i] = c < kBN && n < n_half;
      brow = ((c >> 3) & 1 ? n_half : 0) + n;
    } else {
      const int64_t n = n0 + c;
      b_ok[i] = c < kBN && n < p.N;
      brow = n;
    }
    b_src[i] = b + (b_ok[i] ? brow : 0) * p.ldb + chunk * 8;
  }
  const int ktiles = int((p.K + BK - 1) / BK);
  const auto load_part = [&](int stage, int kt, bool a_part, bool b_part) {
    const int64_t k0 = int64_t(kt) * BK;
    const bool kin = k0 + chunk * 8 < p.K;  // K % 8 == 0: chunks are all-in or all-out
    const uint32_t a_st = sA + stage * kATile + wg * (BM * BK * 2), b_st = sB + stage * kBTile;
#pragma unroll
    for (int i = 0; i < 4 && a_part; ++i) {
      const bool ok = a_ok[i] && kin;
      cp_async16(a_st + swz_bytes(a_lo + 16 * i, chunk), ok ? a_src[i] + k0 : p.a, ok);
    }
#pragma unroll
    for (int i = 0; i < kBIters && b_part; ++i) {
      const int c = (tid >> 3) + (kThreads / 8) * i;
      if (kBChunks % kThreads != 0 && c >= kBN) break;
      const bool ok = b_ok[i] && kin;
      cp_async16(b_st + swz_bytes(c, chunk), ok ? b_src[i] + k0 : p.b, ok);
    }
  };
  const auto load_stage = [&](int stage, int kt) { load_part(stage, kt, true, true); };

  // A warpgroup whose rows are all past the tile's end loads (zeros) but skips the MMAs.
  const bool wg_active = row0 + wg * BM < row1;
  float acc[kBN / 2];
#pragma unroll
  for (int i = 0; i < kBN / 2; ++i) acc[i] = 0.f;

  constexpr bool kEarlyB = kMode == GemmMode::kMoeDown;
  if constexpr (kEarlyB) {
#pragma unroll
    for (int s = 0; s < kAhead; ++s)
      if (s < ktiles) load_part(s, s, false, true);  // in the first commit group: waited for with stage 0
    pdl_wait();
    pdl_launch_dependents();
  }
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < ktiles) load_part(s, s, true, !kEarlyB);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<kAhead - 1>();  // this thread's chunks of K-tile kt have landed
    fence_proxy_async_shared();   // ... and are visible to the tensor cores' reads
    __syncthreads();              // every thread's chunks; every warp past the wait for group kt - 1
    const int nk = kt + kAhead;
    if (nk < ktiles) load_stage(nk % kStages, nk);  // the stage group kt - 1 read
    cp_async_commit();
    if (wg_active) {
      const int st = kt % kStages;
      const uint32_t a_st = sA + st * kATile + wg * (BM * BK * 2), b_st = sB + st * kBTile;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk)
        wgmma_tile<kBN>(acc, wgmma_desc_sw128(a_st + kk * 32), wgmma_desc_sw128(b_st + kk * 32));
      wgmma_commit();
      wgmma_wait<0>();  // its stage may be refilled after the next barrier
    }
  }
  cp_async_wait<0>();
  if (!wg_active) return;

  // ---- epilogue (fragment layout in wgmma.cuh)
  const int lane = tid & 31, warp = (tid & 127) >> 5, g = lane >> 2, cq = (lane & 3) * 2;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t r = row0 + wg * BM + warp * 16 + g + hr * 8;
    if (r >= row1) continue;
    if constexpr (kMode == GemmMode::kMoeGateUp) {
      uint16_t* act = static_cast<uint16_t*>(p.c) + r * p.ldc;
#pragma unroll
      for (int np = 0; np < kBN / 16; ++np) {  // (gate, up) chunk pairs
        const int64_t n = n0 + np * 8 + cq;    // n, n + 1: both in range or both out (I % 8 == 0)
        if (n >= n_half) continue;
        uint16_t h[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float gt = round_to(DType::kBF16, acc[(2 * np) * 4 + hr * 2 + e]);
          const float up = round_to(DType::kBF16, acc[(2 * np + 1) * 4 + hr * 2 + e]);
          h[e] = f32_to_bf16_bits(gt / (1.0f + expf(-gt)) * up);
        }
        *reinterpret_cast<uint32_t*>(act + n) = uint32_t(h[0]) | (uint32_t(h[1]) << 16);
      }
    } else {
      const int32_t pair = p.pair_of_row[r];
      const float w = p.route_w ? p.route_w[pair] : 1.0f;
      float* out = static_cast<float*>(p.c) + int64_t(pair) * p.ldc;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const int64_t n = n0 + j * 8 + cq;
        const float v0 = acc[j * 4 + hr * 2] * w, v1 = acc[j * 4 + hr * 2 + 1] * w;
        if (n + 1 < p.N && (p.ldc & 1) == 0) {
          *reinterpret_cast<float2*>(out + n) = make_float2(v0, v1);
        } else {
          if (n < p.N) out[n] = v0;
          if (n + 1 < p.N) out[n + 1] = v1;
        }
      }
    }
  }
}

template <GemmMode kMode, int kBN, int kWG, int kStages>
void launch(const GemmParams& p, cudaStream_t s) {
  constexpr size_t smem = smem_bytes<kBN, kWG, kStages>();
  static_assert(smem <= 227 * 1024, "more shared memory than an SM has");
  static std::atomic<uint64_t> configured{0};  // once per device, before any graph capture
  if (first_use_on_device(configured))
    cudaFuncSetAttribute(gemm_wgmma_kernel<kMode, kBN, kWG, kStages>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(smem));
  const int64_t cols = kMode == GemmMode::kMoeGateUp ? p.N / 2 : p.N;
  const int64_t per_cta = kMode == GemmMode::kMoeGateUp ? kBN / 2 : kBN;
  const dim3 grid(unsigned((cols + per_cta - 1) / per_cta), unsigned(p.max_tiles));
  if (grid.x == 0 || grid.y == 0) return;
  launch_pdl(gemm_wgmma_kernel<kMode, kBN, kWG, kStages>, grid, dim3(128 * kWG), smem, s, p);
}

// The configuration in use: 2 warpgroups x 256 columns (128 x 256 CTA tile), 4 stages
// (192 KB). Measured against 1 x 128 / 256, 3 x 128 and 2 x 128, with and without a wgmma
// group left running across K-tiles, at 8-2048 tokens: docs/gpu.md ("MoE layer alone").
constexpr int kBN = 256, kWG = 2, kStages = 4;
static_assert(kWG * BM == kGemmWgmmaBM, "moe_group's tile rows");

}  // namespace

void gemm_bf16_wgmma(const GemmParams& p, cudaStream_t s) {
  if (p.leaves > 1 || p.mode == GemmMode::kDense) {
    std::fprintf(stderr, "gemm_bf16_wgmma: the MoE modes without leaves only\n");
    std::abort();
  }
  if (p.mode == GemmMode::kMoeGateUp) launch<GemmMode::kMoeGateUp, kBN, kWG, kStages>(p, s);
  else launch<GemmMode::kMoeDown, kBN, kWG, kStages>(p, s);
}

}  // namespace sparrow::cuda::k
