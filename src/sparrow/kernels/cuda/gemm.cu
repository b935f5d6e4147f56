// bf16 tensor-core GEMM on mma.sync.m16n8k16 (sm_80+; runs on sm_90a), one fixed
// configuration for the dense deterministic linear and the two MoE expert GEMMs.
//
// CTA tile 64 (rows) x 64 (B rows) x 64 (K); 4 warps in 2 x 2, each 32 x 32; 4-stage
// cp.async pipeline; shared tiles are [rows][64] bf16 with 16-byte chunks XOR-swizzled by
// (row % 8) so ldmatrix is conflict-free. Out-of-range rows / K are zero-filled (cp.async
// src-size 0), so a partial tile adds exact zeros. Each output element is accumulated by
// one thread over K in increasing 16-wide mma steps: the result of a row does not depend
// on M, on its position in the tile or on the other rows (batch invariant).
//
// MoE modes run over grouped rows (tokens sorted by expert, moe.cu); blockIdx.y indexes
// the device-side tile list {expert, row_begin, row_end}, CTAs past num_tiles exit.
//  * gate_up: B = w13[e] [2I, K] (gate rows then up rows). Tile column c maps to
//    n = n0 + (c/16)*8 + c%8, from the gate half when (c/8) is even and the up half when
//    odd, so a thread holds gate and up of the same n: act = bf16(silu(g) * u) with g, u
//    first rounded to bf16 (as the CPU's separate GEMMs store them). A rows are gathered:
//    x row a_gather[r] / a_gather_div.
//  * down: B = w2[e] [H, I]; slot_out[pair_of_row[r], n] = acc * route_w[pair] in fp32
//    (acc itself when route_w is null).
#include <cstdio>
#include <cstdlib>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int BM = kGemmBM, BN = kGemmBN, BK = kGemmBK, kStages = 4, kThreads = 128;
constexpr int kTileElems = BM * BK;  // A and B tiles are both 64 x 64
static_assert(BM == 64 && BN == 64 && BK == 64, "loader and swizzle assume 64 x 64 x 64");
constexpr size_t kSmemBytes = size_t(kStages) * 2 * kTileElems * sizeof(uint16_t);  // 64 KiB

__device__ __forceinline__ int swz(int row, int chunk) { return row * BK + ((chunk ^ (row & 7)) << 3); }



template <GemmMode kMode>
__global__ void __launch_bounds__(kThreads) gemm_bf16_kernel(const GemmParams p_in) {
  extern __shared__ __align__(128) uint16_t smem[];
  // Leaf z of a leaf launch: its K block of A and B, its own C block (z = 0: as given).
  GemmParams p = p_in;
  if (blockIdx.z > 0) {
    p.a += int64_t(blockIdx.z) * p.K;
    p.b += int64_t(blockIdx.z) * p.K;
    p.c = static_cast<float*>(p.c) + int64_t(blockIdx.z) * p.leaf_c_stride;
  }
  uint16_t* sA = smem;                          // [kStages][64][64]
  uint16_t* sB = smem + kStages * kTileElems;   // [kStages][64][64]
  // PDL (launch_pdl): every mode but kMoeDown waits for the previous kernel first (A, or
  // the tile list of moe_group just before gate_up). kMoeDown reads the tile list (written
  // two kernels back: gate_up let it start only after its own wait) and streams its first
  // weight stages before waiting for gate_up's act.
  if constexpr (kMode != GemmMode::kMoeDown) {
    pdl_wait();
    pdl_launch_dependents();
  }

  // ---- which rows / columns this CTA owns
  int64_t row0, row1;
  const uint16_t* b = p.b;
  if constexpr (kMode == GemmMode::kDense) {
    row0 = int64_t(blockIdx.y) * BM;
    row1 = min(p.M, row0 + BM);
  } else {
    if (int(blockIdx.y) >= *p.num_tiles) return;
    const int32_t* t = p.tiles + 3 * blockIdx.y;
    b += int64_t(t[0]) * p.b_expert_stride;
    row0 = t[1];
    row1 = t[2];
  }
  const int64_t n_half = p.N / 2;  // gate_up: I
  const int64_t n0 = kMode == GemmMode::kMoeGateUp ? int64_t(blockIdx.x) * (BN / 2) : int64_t(blockIdx.x) * BN;

  // ---- loader: 512 16-byte chunks per tile, 4 per thread for A and for B
  const int tid = threadIdx.x;
  const uint16_t* a_src[4];
  const uint16_t* b_src[4];
  bool a_ok[4], b_ok[4];
  int ld_row[4], ld_chunk[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int c = tid + i * kThreads;
    ld_row[i] = c >> 3;
    ld_chunk[i] = c & 7;
    const int64_t r = row0 + ld_row[i];
    a_ok[i] = r < row1;
    int64_t arow = a_ok[i] ? r : row0;
    if constexpr (kMode == GemmMode::kMoeGateUp) arow = p.a_gather[arow] / p.a_gather_div;
    a_src[i] = p.a + arow * p.lda + ld_chunk[i] * 8;
    int64_t brow;
    if constexpr (kMode == GemmMode::kMoeGateUp) {
      const int col = ld_row[i];
      const int64_t n = n0 + (col >> 4) * 8 + (col & 7);
      b_ok[i] = n < n_half;
      brow = (((col >> 3) & 1) ? n_half : 0) + (b_ok[i] ? n : 0);
    } else {
      const int64_t n = n0 + ld_row[i];
      b_ok[i] = n < p.N;
      brow = b_ok[i] ? n : 0;
    }
    b_src[i] = b + brow * p.ldb + ld_chunk[i] * 8;
  }
  const int ktiles = int((p.K + BK - 1) / BK);
  const auto load_part = [&](int stage, int kt, bool a_part, bool b_part) {
    const int64_t k0 = int64_t(kt) * BK;
    const uint32_t a_base = smem_u32(sA + stage * kTileElems), b_base = smem_u32(sB + stage * kTileElems);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool kin = k0 + ld_chunk[i] * 8 < p.K;  // K % 8 == 0: chunks are all-in or all-out
      const int off = swz(ld_row[i], ld_chunk[i]) * 2;
      if (a_part) cp_async16(a_base + off, a_ok[i] && kin ? a_src[i] + k0 : p.a, a_ok[i] && kin);
      if (b_part) cp_async16(b_base + off, b_ok[i] && kin ? b_src[i] + k0 : p.b, b_ok[i] && kin);
    }
  };
  const auto load_stage = [&](int stage, int kt) { load_part(stage, kt, true, true); };

  // ---- main loop
  const int lane = tid & 31, warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
  float acc[2][4][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.f;

  constexpr bool kEarlyB = kMode == GemmMode::kMoeDown;
  if constexpr (kEarlyB) {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s)
      if (s < ktiles) load_part(s, s, false, true);  // in the first commit group: waited for with stage 0
    pdl_wait();
    pdl_launch_dependents();
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_part(s, s, true, !kEarlyB);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int nk = kt + kStages - 1;
    if (nk < ktiles) load_stage(nk % kStages, nk);
    cp_async_commit();
    const uint16_t* tA = sA + (kt % kStages) * kTileElems;
    const uint16_t* tB = sB + (kt % kStages) * kTileElems;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t af[2][4], bfr[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int r = wm * 32 + mi * 16 + (lane & 15);
        ldmatrix_x4(af[mi], smem_u32(tA + swz(r, kk * 2 + (lane >> 4))));
      }
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        const int r = wn * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(bfr[nj], smem_u32(tB + swz(r, kk * 2 + ((lane >> 3) & 1))));
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mma_bf16(acc[mi][ni], af[mi], &bfr[ni >> 1][(ni & 1) * 2]);
    }
  }
  cp_async_wait<0>();

  // ---- epilogue. Thread holds rows g, g+8 and columns 2*(lane%4), +1 of each n8 tile.
  const int g = lane >> 2, cq = (lane & 3) * 2;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int64_t r = row0 + wm * 32 + mi * 16 + g + hr * 8;
      if (r >= row1) continue;
      if constexpr (kMode == GemmMode::kDense) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int64_t n = n0 + wn * 32 + ni * 8 + cq + e;
            if (n >= p.N) continue;
            float v = acc[mi][ni][hr * 2 + e];
            if (p.bias) v += load_f(p.bias, p.bias_t, n);
            store_f(p.c, p.c_t, r * p.ldc + n, v);
          }
      } else if constexpr (kMode == GemmMode::kMoeGateUp) {
        uint16_t* act = static_cast<uint16_t*>(p.c);
#pragma unroll
        for (int np = 0; np < 2; ++np)  // (gate, up) tile pairs
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int64_t n = n0 + (wn * 2 + np) * 8 + cq + e;
            if (n >= n_half) continue;
            const float gt = round_to(DType::kBF16, acc[mi][2 * np][hr * 2 + e]);
            const float up = round_to(DType::kBF16, acc[mi][2 * np + 1][hr * 2 + e]);
            act[r * p.ldc + n] = f32_to_bf16_bits(gt / (1.0f + expf(-gt)) * up);
          }
      } else {
        const int32_t pair = p.pair_of_row[r];
        const float w = p.route_w ? p.route_w[pair] : 1.0f;  // null: unweighted values (deterministic)
        float* out = static_cast<float*>(p.c) + int64_t(pair) * p.ldc;
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const int64_t n = n0 + wn * 32 + ni * 8 + cq;
          if (n + 1 < p.N && ((p.ldc & 1) == 0)) {
            *reinterpret_cast<float2*>(out + n) = make_float2(acc[mi][ni][hr * 2] * w, acc[mi][ni][hr * 2 + 1] * w);
          } else {
            if (n < p.N) out[n] = acc[mi][ni][hr * 2] * w;
            if (n + 1 < p.N) out[n + 1] = acc[mi][ni][hr * 2 + 1] * w;
          }
        }
      }
    }
}

template <GemmMode kMode>
void launch(const GemmParams& p, cudaStream_t s) {
  static std::atomic<uint64_t> configured{0};  // large dynamic shared memory, once per device (before any graph capture)
  if (first_use_on_device(configured)) {
    cudaFuncSetAttribute(gemm_bf16_kernel<kMode>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemBytes));
  }
  dim3 grid;
  if constexpr (kMode == GemmMode::kDense) {
    grid = dim3(unsigned((p.N + BN - 1) / BN), unsigned((p.M + BM - 1) / BM));
  } else if constexpr (kMode == GemmMode::kMoeGateUp) {
    grid = dim3(unsigned((p.N / 2 + BN / 2 - 1) / (BN / 2)), unsigned(p.max_tiles));
  } else {
    grid = dim3(unsigned((p.N + BN - 1) / BN), unsigned(p.max_tiles));
  }
  grid.z = unsigned(p.leaves > 1 ? p.leaves : 1);
  if (grid.x == 0 || grid.y == 0) return;
  launch_pdl(gemm_bf16_kernel<kMode>, grid, dim3(kThreads), kSmemBytes, s, p);
}

}  // namespace

void gemm_bf16(const GemmParams& p, cudaStream_t s) {
  if (p.leaves > 1 && (p.mode == GemmMode::kMoeGateUp || p.c_t != DType::kF32)) {
    std::fprintf(stderr, "gemm_bf16: leaves need an fp32 C and the dense or MoE down mode\n");
    std::abort();
  }
  switch (p.mode) {
    case GemmMode::kDense: launch<GemmMode::kDense>(p, s); break;
    case GemmMode::kMoeGateUp: launch<GemmMode::kMoeGateUp>(p, s); break;
    case GemmMode::kMoeDown: launch<GemmMode::kMoeDown>(p, s); break;
  }
}

}  // namespace sparrow::cuda::k
