// CUDA kernel launchers and their flat POD parameter structs. Included by .cu files and by
// the host dispatch (ops_cuda.cpp); it must stay free of fmt and host-only headers. All
// pointers are device pointers; every launcher enqueues on `stream` and returns at once.
// Dimension names as in ops.h: T tokens, H hidden, N output features, K reduction,
// Hq/Hkv heads, D head dim, E experts, I expert intermediate size, P = T*topk pairs.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>

#include "sparrow/core/dtype.h"
#include "sparrow/kernels/row_sampling.h"

namespace sparrow::cuda::k {

// ---- elementwise / row ops (elementwise.cu) ---------------------------------------------
struct EmbeddingParams {
  const void* table; DType table_t;  // [V, H]
  const int32_t* ids;                // [T]; ids outside [0, V) give a zero row
  void* out; DType out_t;            // [T, H]
  int64_t T, H, V;
};
void embedding(const EmbeddingParams& p, cudaStream_t stream);

// dst[rows[t], :] = src[t, :] (dtype-converted): K/V rows into their cache slots.
struct ScatterRowsParams {
  const void* src; DType src_t;  // [T, W]
  const int32_t* rows;           // [T]
  void* dst; DType dst_t;        // [slots, W]
  int64_t T, W;
};
void scatter_rows(const ScatterRowsParams& p, cudaStream_t stream);

// y = rmsnorm(x) * w; with residual: residual += x (in residual_t), y = rmsnorm(residual).
struct RmsNormParams {
  const void* x; DType x_t;          // [rows, H]
  void* residual; DType residual_t;  // [rows, H] or null
  const void* w; DType w_t;          // [H]
  void* y; DType y_t;                // [rows, H]; may alias x
  int64_t rows, H;
  float eps;
};
void rms_norm(const RmsNormParams& p, cudaStream_t stream);

struct RopeParams {
  void* x; DType x_t;          // [T, heads, D], in place
  const int32_t* positions;    // [T]
  const float* inv_freq;       // [D/2]
  int64_t T, heads, D;
};
void rope(const RopeParams& p, cudaStream_t stream);

// Fused q|k|v post-processing (ops::attention_prep): one block per token.
struct AttentionPrepParams {
  const void* qkv; DType t; int64_t ld;  // [T, (Hq + 2 Hkv) D]
  int64_t T, Hq, Hkv, D;
  int norm;                              // 0 none, 1 per head ([D] weights), 2 whole projection
  const float* q_w; const float* k_w; float eps;
  const int32_t* positions; const float* inv_freq;
  const int32_t* cache_loc;
  void* q_out;                           // [T, Hq, D], dtype t
  void* k_cache; void* v_cache; DType cache_t;  // [slots, Hkv, D]
};
void attention_prep(const AttentionPrepParams& p, cudaStream_t stream);

struct SiluMulParams {
  const void* gate; DType gate_t;  // [T, I]
  const void* up; DType up_t;      // [T, I]
  void* y; DType y_t;              // [T, I]; may alias gate or up
  int64_t T, I;
};
void silu_mul(const SiluMulParams& p, cudaStream_t stream);

constexpr int kRouterMaxExperts = 512;  // 16 per lane of one warp
struct RouteParams {
  const void* logits; DType logits_t;  // [T, E]
  int32_t* ids;                        // [T, k]
  float* weights;                      // [T, k]
  int64_t T, E;
  int k;
  bool renormalize;
};
void route_topk_softmax(const RouteParams& p, cudaStream_t stream);

struct LogSoftmaxParams {
  const void* logits; DType logits_t;  // [T, V]
  float* out;                          // [T, V]
  int64_t T, V;
};
void log_softmax(const LogSoftmaxParams& p, cudaStream_t stream);

// out[r] = first index of row r's maximum (ties to the lower index; NaN never wins).
struct ArgmaxParams {
  const float* x;  // [rows, V]
  int64_t rows, V;
  int32_t* out;    // [rows]
};
void argmax_rows(const ArgmaxParams& p, cudaStream_t stream);

struct SampleParams {
  const float* x;  // [rows, V]
  int64_t rows, V;
  const RowSampling* params;  // [rows] (device)
  int32_t* out;               // [rows]
  double mass_scale;          // fixed-point unit of probability: V * mass_scale <= 2^63
  bool shortlist;             // top-k rows by the shortlist where it can answer (else the radix path only)
  int* shortlist_rows;        // (device) or null: += the rows the shortlist answered (tests)
};
void sample_rows(const SampleParams& p, cudaStream_t stream);

// edits[0, n) applied to x in place (LogitEdit), saved[i] = the logit before when saved is
// not null; restore: x at edits[i] = saved[i]. One thread per edit.
struct LogitEditParams {
  float* x;  // [rows, V]
  int64_t V;
  const LogitEdit* edits;  // [n] (device)
  int64_t n;
  float* saved;            // [n] (device) or null
};
void apply_logit_edits(const LogitEditParams& p, cudaStream_t stream);
void restore_logits(const LogitEditParams& p, cudaStream_t stream);

struct RowLogprobsParams {
  const float* x;  // [rows, V]
  int64_t rows, V;
  const int32_t* chosen;      // [rows] (device): each row's token
  const RowLogprobs* params;  // [rows] (device)
  RowLogprobsOut* out;        // [rows] (device); rows with top_n < 0 untouched
  bool shortlist;             // top-N by the shortlist where it can answer (else the radix path only)
  int* shortlist_rows;        // (device) or null: += the rows the shortlist answered (tests)
};
void row_logprobs(const RowLogprobsParams& p, cudaStream_t stream);

// fp32 SIMT GEMM y = x w^T (+bias), one thread per output, K in increasing order (f32 path
// and a correctness fallback; not fast).
struct LinearSimtParams {
  const void* x; DType in_t; int64_t ldx;  // [T, K]
  const void* w; int64_t ldw;              // [N, K]
  const void* bias; DType bias_t;          // [N] or null
  void* y; DType y_t; int64_t ldy;         // [T, N]
  int64_t T, N, K;
};
void linear_simt(const LinearSimtParams& p, cudaStream_t stream);

// An A/B timing switch (SPARROW_PDL, SPARROW_ATTN_FLASH, ...): on unless the environment
// variable `name` is set to 0. Call sites keep the answer in a function-local static.
inline bool ab_switch_on(const char* name) {
  const char* e = std::getenv(name);
  return !(e && e[0] == '0');
}

// ---- attention (attention.cu) -----------------------------------------------------------
constexpr int kAttnTile = 64;          // KV positions per tile (fixed: batch invariance)
constexpr int kAttnMaxHeadDim = 256;
constexpr int kAttnMaxSplits = 32;     // a context is cut into at most this many fixed splits
constexpr int kAttnMaxDynSplits = 128; // default mode: at most this many splits of a decode context
constexpr int kAttnSplitMaxRows = 256; // decode-split shape for steps of at most this many rows
struct AttentionParams {
  const void* q; const void* k; const void* v; void* out; DType t;  // q/out [T, Hq, D]; k/v [slots, Hkv, D]
  int64_t T, Hq, Hkv, D;
  int32_t batch;
  const int32_t* req_slots; const int32_t* seq_lens; const int32_t* extend_lens;
  const int32_t* q_offsets; const int32_t* req_to_token;  // [B] x4, [max_reqs, max_context]
  int64_t max_context;
  float scale;
  int64_t split;       // positions per split: attention_split_size(max_context)
  int32_t n_splits;    // ceil(max_context / split)
  float* partials;     // null: extend shape; else [T, Hq, n_splits, D + 2] (decode-split shape, T == batch)
  int32_t dyn_splits;  // decode-split shape: 0, every context in fixed splits of `split` positions (the
                       // extend shape's, bit-identical to it); else each context cut into this many
                       // splits of whole tiles (<= n_splits; default mode: attention_decode_splits)
};
// The dyn_splits a decode step of `batch` sequences takes in the default mode: enough
// (sequence, KV head, split) blocks to fill the GPU whatever the contexts' lengths, at most
// kAttnMaxDynSplits. The partials' stride (n_splits) is the larger of it and the fixed count.
int32_t attention_decode_splits(int64_t batch, int64_t Hkv);
// Split size for a context of max_context positions (a multiple of kAttnTile).
int64_t attention_split_size(int64_t max_context);
// Whether the kernels take this head layout (group size, head dim, shared memory).
bool attention_shape_ok(int64_t Hq, int64_t Hkv, int64_t D);
void paged_attention(const AttentionParams& p, cudaStream_t stream);
// The extend shape in one split per block, state in registers (attention_flash.cu): not
// bit-identical to the decode-split shape, so the default mode only (ops_cuda.cpp picks).
bool attention_flash_ok(const AttentionParams& p);
void paged_attention_flash(const AttentionParams& p, cudaStream_t stream);

// ---- bf16 tensor-core GEMM (gemm.cu) --------------------------------------------------
// One fixed tile configuration (BM x BN x BK = 64 x 64 x 64, 4 warps of mma.sync
// m16n8k16, 4-stage cp.async pipeline): every output element is reduced over K in
// increasing 16-wide steps, the same for every row whatever M is (batch invariant).
// The default mode's MoE GEMMs may run on gemm_wgmma.cu instead (same parameters).
constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 64;
enum class GemmMode : int32_t { kDense = 0, kMoeGateUp = 1, kMoeDown = 2 };
struct GemmParams {
  GemmMode mode;
  const uint16_t* a; int64_t lda;   // A rows (bf16) [M, K]; gate_up: rows of x gathered
  const int32_t* a_gather;          // gate_up: A row of grouped row r = a_gather[r] / a_gather_div
  int32_t a_gather_div;
  const uint16_t* b; int64_t ldb;   // B (bf16) [N, K] (HF Linear layout); per expert for MoE
  int64_t b_expert_stride;          // elements between experts' B
  int64_t M, N, K;                  // dense: M rows; MoE: N = B rows per expert (gate_up: 2I)
  // dense epilogue: y[r, n] = acc + bias[n]
  void* c; DType c_t; int64_t ldc;
  const void* bias; DType bias_t;
  // MoE: grouped row tiles {expert, row_begin, row_end} and their count (device)
  const int32_t* tiles; const int32_t* num_tiles; int32_t max_tiles;
  // gate_up epilogue: act[r, n] = bf16(silu(bf16(gate)) * bf16(up)), act ld = N/2
  // down epilogue: slot_out[pair_of_row[r], n] = acc * route_w[pair_of_row[r]] (fp32)
  const int32_t* pair_of_row; const float* route_w;
  // Leaves (deterministic leaf tree; dense and MoE down, fp32 C): blockIdx.z = leaf runs
  // the GEMM over K block `leaf` (columns [leaf * K, (leaf + 1) * K) of A and B) into C +
  // leaf * leaf_c_stride floats. 0 or 1: one GEMM.
  int32_t leaves; int64_t leaf_c_stride;
};
void gemm_bf16(const GemmParams& p, cudaStream_t stream);

// ---- the MoE expert GEMMs on Hopper wgmma (gemm_wgmma.cu) ------------------------------
// gemm_bf16's kMoeGateUp / kMoeDown contract (no leaves) on the warpgroup MMA, over row
// tiles of kGemmWgmmaBM rows (moe_group's bm). Not bit-identical to gemm_bf16 (the tensor
// core's order inside a 16-wide K step may differ): the default mode only.
constexpr int kGemmWgmmaBM = 128;
void gemm_bf16_wgmma(const GemmParams& p, cudaStream_t stream);

// ---- skinny bf16 GEMM for decode batches (gemv.cu) --------------------------------------
constexpr int kGemvMaxRows = 8;
struct GemvParams {
  const uint16_t* x; int64_t ldx;   // [T, K] bf16, rows 16-byte aligned, K % 8 == 0
  const uint16_t* w; int64_t ldw;   // [N, K] bf16
  const void* bias; DType bias_t;   // [N] or null
  void* y; DType y_t; int64_t ldy;  // [T, N]
  int64_t T, N, K;                  // T <= kGemvMaxRows
};
void gemv_bf16(const GemvParams& p, cudaStream_t stream);

// ---- MoE routing glue (moe.cu) ----------------------------------------------------------
// Groups the P = T*k (token, slot) pairs by expert with a stable counting sort (within an
// expert, pairs keep index order). Outputs expert_start [E+1], pair_of_row [P] (grouped
// row -> token*k+slot) and the GEMM row tiles (BM rows at most, never crossing experts).
// ids are global expert ids; the E grouped experts are [expert0, expert0 + E) (expert
// parallelism): pairs routed elsewhere are left out of every group and tile.
struct MoeGroupParams {
  const int32_t* ids; int64_t P; int32_t E; int32_t bm;
  int32_t* expert_start; int32_t* pair_of_row; int32_t* tiles; int32_t* num_tiles;
  int32_t expert0;
};
int32_t moe_max_tiles(int64_t P, int32_t E, int32_t bm);
void moe_group(const MoeGroupParams& p, cudaStream_t stream);

// out[t] = sum_{s<k} slot_out[t*k+s] (slot order, fp32) (+ sigmoid(shared_logit[t]) * shared[t]).
// With weights (deterministic values): out[t] = sum_s weights[t*k+s] * slot_out[t*k+s], the
// first slot a product, then fmaf in slot order.
struct MoeCombineParams {
  const void* slot_out; DType slot_t;  // [T*k, H], f32 or bf16 (the wgmma down GEMM's slot values)
  const float* shared_out;    // [T, H] or null
  const float* shared_logit;  // [T] or null
  void* out; DType out_t;     // [T, H]
  int64_t T, H; int k;
  const float* weights;       // [T*k] or null (slot_out already weighted)
};
void moe_combine(const MoeCombineParams& p, cudaStream_t stream);

// dst[i] = value for i < n (e.g. -0.0: the additive identity that keeps -0.0 itself).
void fill_f32(float* dst, size_t n, float value, cudaStream_t stream);

// The routed MoE block for decode-sized batches (moe_skinny.cu; default mode): routing
// from the router logits, the experts' gate_up and down, and the slot-order combine (with
// the gated shared expert) in two kernels. Needs T <= kMoeSkinnyMaxTokens,
// T*k <= kMoeSkinnyMaxPairs, E <= kRouterMaxExperts, H and I multiples of 8.
constexpr int kMoeSkinnyMaxTokens = 4, kMoeSkinnyMaxPairs = 64;
struct MoeSkinnyParams {
  const uint16_t* x;                   // [T, H] bf16
  const void* logits; DType logits_t;  // [T, E] router logits
  int64_t T, E, H, I;
  int k;
  bool renormalize;
  const uint16_t* w13;                 // [E, 2I, H]
  const uint16_t* w2;                  // [E, H, I]
  int32_t* ids; float* weights;        // [T*k] routing (written by kernel 1)
  uint16_t* act;                       // [T*k, I] scratch
  const float* shared_out;             // [T, H] or null
  const float* shared_logit;           // [T] or null
  void* out; DType out_t;              // [T, H]
};
void moe_skinny(const MoeSkinnyParams& p, cudaStream_t stream);

}  // namespace sparrow::cuda::k
