// CUDA implementations of the ops in ops.h (same contracts; ops:: dispatches here when
// the tensors are on Device::kCUDA), plus the MoE expert pipeline. Raw pointer arguments
// (ids, positions, inv_freq, the AttentionBatch arrays, router outputs) are DEVICE pointers
// when the tensors are on the GPU; AttentionBatch::batch and max_context stay host values.
// Everything runs on cuda::current_stream() and returns without synchronizing. Arguments
// that live on the device (token ids, req_to_token entries) are not range-checked here:
// the scheduler validates them on the host before they are uploaded.
#pragma once

#include <cstdint>

#include "sparrow/core/cuda/device.h"
#include "sparrow/kernels/ops.h"

namespace sparrow::ops::cuda {

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, float scale, const Tensor& out);
size_t paged_attention_scratch_floats(int64_t T, int64_t Hq, int64_t D, int64_t max_context);
void embedding(const Tensor& table, const int32_t* ids, const Tensor& out);
void scatter_rows(const Tensor& src, const int32_t* rows, const Tensor& dst);
void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y);
void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& w, float eps, const Tensor& y);
void head_rms_norm(const Tensor& x, const Tensor& w, float eps);
void rope(const Tensor& x, const int32_t* positions, const float* inv_freq);
void attention_prep(const Tensor& qkv, int64_t heads, int64_t kv_heads, HeadNorm norm, const Tensor* q_norm,
                    const Tensor* k_norm, float eps, const int32_t* positions, const float* inv_freq,
                    const int32_t* cache_loc, const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache);
void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& y);
void route_topk_softmax(const Tensor& logits, int k, bool renormalize, int32_t* ids, float* weights);
void log_softmax(const Tensor& logits, const Tensor& out);
void argmax_rows(const Tensor& logits, int32_t* out);
// shortlist_rows (device, or null): += the rows the shortlist answered (tests).
void sample_rows(const Tensor& logits, const RowSampling* params, int32_t* out, int* shortlist_rows = nullptr);
void row_logprobs(const Tensor& logits, const int32_t* chosen, const RowLogprobs* params, RowLogprobsOut* out,
                  int* shortlist_rows = nullptr);
// How sample_rows' top-k (k <= 128) and row_logprobs' top-N are found
// (kernels/cuda/sampling.cu): from the shortlist of the row's largest logits where it can
// answer, else by radix select over the row (the default, true); or by radix select only
// (false). The same tokens and bits either way. Process-wide; SPARROW_SAMPLING_SHORTLIST=0
// sets false at start (A/B timing), tests directly.
void set_sampling_shortlist(bool on);
void apply_logit_edits(const Tensor& logits, const LogitEdit* edits, int64_t n, float* saved);
void restore_logits(const Tensor& logits, const LogitEdit* edits, int64_t n, const float* saved);

// Which kernel a bf16 linear takes. kAuto: deterministic mode -> kFixed (batch-invariant
// tensor-core kernel, every T); else T <= kGemvMaxRows -> kGemv (skinny streaming kernel);
// else cuBLASLt (kFixed when there is a bias).
enum class GemmBackend { kAuto, kCublasLt, kFixed, kGemv };
// ops::linear_leaves on the GPU (its contract; scratch from ws, rows in chunks of
// kLeafChunkRows: at most linear_leaves_workspace_bytes).
constexpr int64_t kLeafChunkRows = 256;
void linear_leaves(const Tensor& x, const Tensor& w, int leaves, const Tensor& y, Arena* ws);
size_t linear_leaves_workspace_bytes(int64_t N, int leaves);

// Frees the cuBLASLt workspace of `stream` on the current device (call before destroying a
// stream that ran GEMMs, after its work is done: the handle may be reused by a new stream).
void release_stream_workspace(cudaStream_t stream);
void linear_with(GemmBackend backend, const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

// ---- MoE ---------------------------------------------------------------------------
// Device scratch the expert pipeline takes from `ws` for T tokens (bytes, upper bound).
size_t moe_workspace_bytes(int64_t T, int k, int64_t E, int64_t H, int64_t I);

// Which kernel runs the expert GEMMs of moe_experts (default mode; deterministic mode's
// moe_expert_values always takes the fixed mma.sync kernel). kAuto: Hopper's wgmma kernel
// (kernels/cuda/gemm_wgmma.cu) from kMoeWgmmaMinPairs (token, slot) pairs up, the mma.sync
// kernel (gemm.cu) below (measured crossover: docs/gpu.md, "MoE layer alone"); never in
// deterministic mode (its order inside a K step is not mma.sync's).
// Process-wide; SPARROW_MOE_GEMM=mma | wgmma sets it at start (A/B timing), tests directly.
enum class MoeGemm { kAuto, kMma, kWgmma };
constexpr int64_t kMoeWgmmaMinPairs = 4096;
void set_moe_gemm(MoeGemm choice);
bool moe_gemm_uses_wgmma(int64_t pairs);
// The slot values' dtype fused_moe keeps between the down GEMM and the combine: bf16 where
// the wgmma GEMMs run (each weighted slot value rounded once, as an expert's bf16 output
// is; half the combine's memory traffic), f32 on the mma.sync path (docs/numerics.md).
DType moe_slot_dtype(int64_t pairs);

// The ops.h MoE pair on the GPU (same contracts).
void moe_experts(const Tensor& x, const int32_t* ids, const float* weights, int k, const Tensor& w13,
                 const Tensor& w2, Arena& ws, const Tensor& slot_out, int64_t expert0 = 0, int64_t router_experts = 0);
void moe_combine(const Tensor& slot_out, int k, const Tensor* shared_out, const Tensor* shared_logit,
                 const Tensor& out);
void moe_combine_weighted(const Tensor& values, const float* weights, int k, const Tensor* shared_out,
                          const Tensor* shared_logit, const Tensor& out);
size_t moe_expert_values_workspace_bytes(int k, int64_t E, int64_t H, int64_t I, int leaves);
void tree_sum_blocks(const Tensor& src, int blocks, const Tensor& dst);

// Routing + experts + combine from the router logits [T, E] (ops::fused_moe). Decode-sized
// batches in the default mode take the two-kernel skinny path (moe_skinny.cu); otherwise
// route_topk_softmax, moe_experts and moe_combine.
void fused_moe(const Tensor& x, const Tensor& logits, int k, bool renormalize, const Tensor& w13, const Tensor& w2,
               const Tensor* shared_out, const Tensor* shared_logit, Arena& ws, const Tensor& out,
               int64_t expert0 = 0);
// Deterministic MoE values (ops::moe_expert_values on the GPU).
void moe_expert_values(const Tensor& x, const int32_t* ids, int k, const Tensor& w13, const Tensor& w2, int leaves,
                       int64_t expert0, int64_t router_experts, Arena& ws, const Tensor& values);
// Whether fused_moe takes the skinny path for x [T, H] with E experts and top-k.
bool moe_skinny_eligible(const Tensor& x, int64_t E, int k);

// The whole routed MoE block (router GEMM, top-k, experts, combine; no shared expert):
// x [T, H] bf16 -> out [T, H]. Scratch from ws (rewound on return).
void moe_forward(const Tensor& x, const Tensor& router_w, const Tensor& w13, const Tensor& w2, int k, bool renormalize,
                 Arena& ws, const Tensor& out);

}  // namespace sparrow::ops::cuda
