// The two MoE expert GEMMs of the default mode on Hopper's warpgroup MMA (wgmma, sm_90a):
// the contract of gemm.cu's kMoeGateUp / kMoeDown modes (grouped row tiles from moe_group,
// gathered A rows, the SiLU-mul and routing-weight epilogues; the down epilogue may also
// write the weighted slot values in bf16, as fused_moe asks: ops::cuda::moe_slot_dtype),
// shaped for prefill-sized batches, where gemm.cu's 64 x 64 tiles leave the kernel bound
// by L2 bandwidth (each weight tile re-read once per 64 rows, each A tile once per 64
// columns).
//
// Tiles of 128 rows (one expert, moe_group's kGemmWgmmaBM) x 256 columns. Persistent and
// warp-specialized: one CTA per SM walks the (row tile, column tile) list with a stride of
// the grid. Warpgroup 0 is the producer: its 128 threads move A and B chunks into a
// 4-stage ring (128-byte swizzle layout, wgmma.cuh) with cp.async; a thread marks stage j
// full (an mbarrier of 128 arrivals) once its own copies of j have landed, kLag stages
// later, after fence.proxy.async (the copies are generic-proxy writes; wgmma reads through
// the async proxy). Warpgroups 1 and 2 are the consumers, rows [0, 64) and [64, 128) of
// the tile against the B tile both share, straight from shared memory: each waits for
// stage j, issues its four wgmmas and, once stage j - 1's are complete (one group left
// running), marks that stage empty (256 arrivals). The producer runs ahead across tile
// boundaries, so a tile's first stages load while the consumers store the previous tile's
// results. Out-of-range rows / K are zero-filled, as in gemm.cu.
//
// Measured against the non-persistent kernel it replaced (all threads loading, a block
// barrier per K-tile, the same tiles): the MoE layer at 4096 / 8192 tokens 6% / 10% faster,
// 1024 and 512 (forced) 2-3% faster, 2048 2% slower (docs/gpu.md, "MoE layer alone"). And
// against 3 consumer warpgroups with 192 x 192 tiles (fewer L2 bytes per FLOP): slower
// everywhere, 35% at 4096 tokens. B through TMA instead of the producer's cp.async: the
// same speed (1b27336, reverted). (Tiles are dealt to CTAs statically, b, b + grid, ...; a
// tile's cost varies with its rows, which may be what 2048 tokens lost.)
//
// Numerics: fp32 accumulation over K in 16-wide steps, like gemm.cu, but the tensor core's
// order of adding inside a step is not promised to match mma.sync's: this kernel serves the
// default mode only (ops::cuda::moe_gemm_uses_wgmma); deterministic mode keeps gemm.cu.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"
#include "sparrow/kernels/cuda/wgmma.cuh"

namespace sparrow::cuda::k {
namespace {

constexpr int BM = 64, BK = 64;                     // rows per consumer warpgroup, K per stage
constexpr int kCons = 2, kBN = 256;                 // consumer warpgroups, tile columns (wgmma N)
constexpr int kStages = 4, kLag = 2;                // ring depth; stages a full mark trails its loads
constexpr uint32_t kATile = kCons * BM * BK * 2, kBTile = kBN * BK * 2;  // bytes per stage
constexpr size_t kSmem = size_t(kStages) * (kATile + kBTile) + 2 * kStages * 8 + 1024;  // + barriers, alignment
static_assert(kCons * BM == kGemmWgmmaBM, "moe_group's tile rows");

// Byte offset of 16-byte chunk `chunk` of tile row `row` (128-byte swizzle).
__device__ __forceinline__ uint32_t swz_bytes(int row, int chunk) { return uint32_t(row * 128 + ((chunk ^ (row & 7)) << 4)); }

// Epilogue of one warpgroup's 64 rows (fragment layout in wgmma.cuh): rows [r_wg, r_wg +
// 64) of the row tile that ends at row1, columns from n0; t = thread index in the warpgroup.
template <GemmMode kMode>
__device__ __forceinline__ void store_tile(const GemmParams& p, const float* acc, int64_t r_wg, int64_t row1, int64_t n0,
                                           int t) {
  const int64_t n_half = p.N / 2;  // gate_up: I
  const int lane = t & 31, warp = t >> 5, g = lane >> 2, cq = (lane & 3) * 2;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t r = r_wg + warp * 16 + g + hr * 8;
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
    } else if (p.c_t == DType::kBF16) {  // bf16 slot values (fused_moe): half the combine's traffic
      const int32_t pair = p.pair_of_row[r];
      const float w = p.route_w ? p.route_w[pair] : 1.0f;
      uint16_t* out = static_cast<uint16_t*>(p.c) + int64_t(pair) * p.ldc;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const int64_t n = n0 + j * 8 + cq;  // n, n + 1: both in range or both out (H % 8 == 0)
        if (n >= p.N) continue;
        const uint32_t lo = f32_to_bf16_bits(acc[j * 4 + hr * 2] * w), hi = f32_to_bf16_bits(acc[j * 4 + hr * 2 + 1] * w);
        *reinterpret_cast<uint32_t*>(out + n) = lo | (hi << 16);
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

template <GemmMode kMode>
__global__ void __launch_bounds__(128 * (kCons + 1), 1) gemm_wgmma_kernel(const GemmParams p) {
  // A consumer releases stage j - 1 only after it has waited for stage j (one wgmma group
  // left running), and the producer marks j full only after it has issued j + kLag, which
  // needs stage j + kLag - kStages released: so kLag <= kStages - 2 (kStages - 1 deadlocks).
  static_assert(kLag >= 1 && kLag <= kStages - 2, "stage j marked full before it waits on stage j - 1's release");
  constexpr int kARows = 4 * kCons, kBRows = kBN / 16;  // rows per producer thread
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = (smem_u32(smem_raw) + 1023u) & ~1023u;  // swizzle atoms need 1024-byte alignment
  const uint32_t sA = base, sB = base + kStages * kATile, bars = sB + kStages * kBTile;
  const auto full = [&](int s) { return bars + 8u * uint32_t(s); };
  const auto empty = [&](int s) { return bars + 8u * uint32_t(kStages + s); };
  const int tid = threadIdx.x, wg = tid >> 7;
  if (tid == 0)
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full(s), 128);
      mbar_init(empty(s), 128 * kCons);
    }
  __syncthreads();

  const int64_t n_half = p.N / 2;  // gate_up: I
  const int64_t cols = kMode == GemmMode::kMoeGateUp ? n_half : p.N;
  const int64_t per_cta = kMode == GemmMode::kMoeGateUp ? kBN / 2 : kBN;
  const int ncol = int((cols + per_cta - 1) / per_cta);
  const int ktiles = int((p.K + BK - 1) / BK);
  // gate_up reads its tile list (moe_group, just before it) after the wait; down may read it
  // before (moe_group finished before gate_up passed its own wait) to load B early.
  if constexpr (kMode == GemmMode::kMoeGateUp) {
    pdl_wait();
    pdl_launch_dependents();
  }
  const int total = *p.num_tiles * ncol;

  if (wg == 0) {  // ---------------- producer
    const int chunk = tid & 7, r8 = tid >> 3;  // 16-byte chunk of A rows r8 + 16 i, B rows r8 + 16 i
    int j = 0;                                  // stages issued (across tiles)
    bool early_b = false;                       // down: the first tile's first B stages went before the wait
    const auto b_row0 = [&](int tile, int64_t& n_first) -> const uint16_t* {
      const int32_t* t = p.tiles + 3 * (tile / ncol);
      const int64_t n0 = int64_t(tile % ncol) * per_cta;
      const uint16_t* b = p.b + int64_t(t[0]) * p.b_expert_stride;
      if constexpr (kMode == GemmMode::kMoeGateUp) {
        // B tile row c holds the gate row ((c / 8) even) or the up row (odd) of n = n0 +
        // (c / 16) * 8 + c % 8, so a consumer thread's accumulators hold gate and up of the
        // same n (store_tile pairs them). Here c = r8 + 16 i: gate for r8 < 8, n = n0 + 8 i + r8 % 8.
        n_first = n0 + (r8 & 7);
        return b + ((r8 >> 3) * n_half + n_first) * p.ldb + chunk * 8;
      } else {
        n_first = n0 + r8;
        return b + n_first * p.ldb + chunk * 8;
      }
    };
    constexpr int64_t kBStep = kMode == GemmMode::kMoeGateUp ? 8 : 16;  // n between B rows i and i + 1
    const int64_t n_end = kMode == GemmMode::kMoeGateUp ? n_half : p.N;
    const auto load_b = [&](uint32_t b_st, const uint16_t* b0, int64_t n_first, int64_t k0, bool kin) {
#pragma unroll
      for (int i = 0; i < kBRows; ++i) {
        const bool ok = kin && n_first + kBStep * i < n_end;
        cp_async16(b_st + swz_bytes(r8 + 16 * i, chunk), ok ? b0 + kBStep * i * p.ldb + k0 : p.b, ok);
      }
    };
    if constexpr (kMode == GemmMode::kMoeDown) {
      if (int(blockIdx.x) < total) {
        int64_t nf;
        const uint16_t* b0 = b_row0(int(blockIdx.x), nf);
        for (int s = 0; s < kStages && s < ktiles; ++s)
          load_b(sB + s * kBTile, b0, nf, int64_t(s) * BK, int64_t(s) * BK + chunk * 8 < p.K);
        early_b = true;
      }
      pdl_wait();
      pdl_launch_dependents();
    }
    for (int tile = blockIdx.x; tile < total; tile += gridDim.x) {
      const int32_t* t = p.tiles + 3 * (tile / ncol);
      const int64_t row0 = t[1], row1 = t[2];
      const uint16_t* a_src[kARows];
      uint32_t a_ok = 0;
#pragma unroll
      for (int i = 0; i < kARows; ++i) {
        const int64_t r = row0 + r8 + 16 * i;
        const bool ok = r < row1;
        a_ok |= uint32_t(ok) << i;
        int64_t arow = ok ? r : row0;
        if constexpr (kMode == GemmMode::kMoeGateUp) arow = p.a_gather[arow] / p.a_gather_div;
        a_src[i] = p.a + arow * p.lda + chunk * 8;
      }
      int64_t nf;
      const uint16_t* b0 = b_row0(tile, nf);
      for (int kt = 0; kt < ktiles; ++kt, ++j) {
        const int s = j % kStages;
        mbar_wait(empty(s), ((j / kStages) & 1) ^ 1);  // a fresh barrier's previous phase counts as done
        const int64_t k0 = int64_t(kt) * BK;
        const bool kin = k0 + chunk * 8 < p.K;  // K % 8 == 0: chunks are all-in or all-out
        const uint32_t a_st = sA + s * kATile;
#pragma unroll
        for (int i = 0; i < kARows; ++i) {
          const bool ok = ((a_ok >> i) & 1) && kin;
          cp_async16(a_st + swz_bytes(r8 + 16 * i, chunk), ok ? a_src[i] + k0 : p.a, ok);
        }
        if (!(early_b && kt < kStages)) load_b(sB + s * kBTile, b0, nf, k0, kin);
        cp_async_commit();
        if (j >= kLag) {
          cp_async_wait<kLag>();  // this thread's copies of stage j - kLag have landed
          fence_proxy_async_shared();
          mbar_arrive(full((j - kLag) % kStages));
        }
      }
      early_b = false;
    }
    cp_async_wait<0>();
    fence_proxy_async_shared();
    for (int jj = j > kLag ? j - kLag : 0; jj < j; ++jj) mbar_arrive(full(jj % kStages));
    return;
  }

  // ---------------- consumers: warpgroup c = wg - 1 multiplies rows [64 c, 64 c + 64)
  if constexpr (kMode == GemmMode::kMoeDown) {
    pdl_wait();  // the epilogue reads pair_of_row / route_w and writes the slot outputs
    pdl_launch_dependents();
  }
  const int c = wg - 1;
  int j = 0;
  float acc[kBN / 2];
  for (int tile = blockIdx.x; tile < total; tile += gridDim.x) {
    const int32_t* t = p.tiles + 3 * (tile / ncol);
    const int64_t row0 = t[1], row1 = t[2];
    const int64_t n0 = int64_t(tile % ncol) * per_cta;
    if (row0 + c * BM >= row1) {  // rows all past the tile's end: no MMAs, the same barriers
      for (int kt = 0; kt < ktiles; ++kt, ++j) {
        mbar_wait(full(j % kStages), (j / kStages) & 1);
        mbar_arrive(empty(j % kStages));
      }
      continue;
    }
#pragma unroll
    for (int i = 0; i < kBN / 2; ++i) acc[i] = 0.f;
    for (int kt = 0; kt < ktiles; ++kt, ++j) {
      const int s = j % kStages;
      mbar_wait(full(s), (j / kStages) & 1);
      const uint32_t a_st = sA + s * kATile + c * (BM * BK * 2), b_st = sB + s * kBTile;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk)
        wgmma_m64n256k16(acc, wgmma_desc_sw128(a_st + kk * 32), wgmma_desc_sw128(b_st + kk * 32));
      wgmma_commit();
      wgmma_wait<1>();  // stage j - 1's wgmmas are complete
      if (kt > 0) mbar_arrive(empty((j - 1) % kStages));
    }
    wgmma_wait<0>();
    if (ktiles > 0) mbar_arrive(empty((j - 1) % kStages));
    store_tile<kMode>(p, acc, row0 + c * BM, row1, n0, tid & 127);
  }
}

template <GemmMode kMode>
void launch(const GemmParams& p, cudaStream_t s) {
  constexpr size_t smem = kSmem;
  static_assert(smem <= 227 * 1024, "more shared memory than an SM has");
  static std::atomic<uint64_t> configured{0};  // once per device, before any graph capture
  if (first_use_on_device(configured))
    cudaFuncSetAttribute(gemm_wgmma_kernel<kMode>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  const int64_t cols = kMode == GemmMode::kMoeGateUp ? p.N / 2 : p.N;
  const int64_t per_cta = kMode == GemmMode::kMoeGateUp ? kBN / 2 : kBN;
  const int64_t tiles = (cols + per_cta - 1) / per_cta * p.max_tiles;
  if (tiles == 0) return;
  launch_pdl(gemm_wgmma_kernel<kMode>, dim3(unsigned(std::min<int64_t>(tiles, current_sm_count()))),
             dim3(128 * (kCons + 1)), smem, s, p);
}

}  // namespace

void gemm_bf16_wgmma(const GemmParams& p, cudaStream_t s) {
  if (p.leaves > 1 || p.mode == GemmMode::kDense) {
    std::fprintf(stderr, "gemm_bf16_wgmma: the MoE modes without leaves only\n");
    std::abort();
  }
  if (p.mode == GemmMode::kMoeGateUp) launch<GemmMode::kMoeGateUp>(p, s);
  else launch<GemmMode::kMoeDown>(p, s);
}

}  // namespace sparrow::cuda::k
