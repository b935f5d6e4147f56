// The op API the model calls. Each op validates its arguments once and dispatches on
// device and dtype: tensors on Device::kCUDA go to kernels/cuda/ (ops_cuda.h; raw pointer
// arguments are then device pointers too), CPU tensors to the kernels below. Optimized CPU
// kernels live in kernels/cpu/ (AVX-512 BF16 where the processor has it, AVX2 otherwise,
// chosen at run time); kernels/reference/ holds the plain loops every test compares
// them to. All accumulation is in fp32.
//
// Dimension names: T tokens, H hidden, N output features, K reduction, Hq / Hkv query /
// key-value heads, D head dim, E experts, V vocabulary.
#pragma once

#include <cstdint>

#include "sparrow/core/arena.h"
#include "sparrow/core/tensor.h"
#include "sparrow/kernels/row_sampling.h"

namespace sparrow::ops {

// y[T, N] = x[T, K] . w[N, K]^T (+ bias[N]). x / w dtypes: bf16 / bf16, f32 / f32, or
// f32 / bf16 (fp32 activations against bf16 weights: the CPU `--dtype bfloat16` setup;
// products are formed exactly inside fp32 FMAs, no rounding of x). bias is null, f32 or
// bf16; y is any float dtype (rounded once from the fp32 accumulator). w is in HF Linear
// layout (row n holds output feature n). Each y element is reduced over K in an order that
// depends on K (and the dtype combination) alone, never on T, the register blocking or
// the thread count (batch invariance); the AVX2 and AVX-512 kernels give the same bits.
// See docs/numerics.md.
void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

// dst = src between any two devices (same dtype and element count, both contiguous).
// Device-to-device copies are queued on the current stream; a copy that reads or writes
// host memory has finished when this returns (the host buffer may be reused at once).
void copy(const Tensor& dst, const Tensor& src);

// The deterministic row-parallel reduction (docs/numerics.md): y = x . w^T with K cut into
// `leaves` equal blocks (1 <= leaves <= 64, K % leaves == 0). Each block is reduced exactly
// as ops::linear reduces a row of K / leaves values, and the block sums are combined by the
// fixed pairwise tree ((b0 + b1) + (b2 + b3)) ... in fp32, then rounded once to y's dtype.
// With an fp32 y this is bit-identical to `leaves` ops::linear calls on the column blocks
// followed by that tree, but it is one pass over w with no scratch: the kernel keeps the
// per-leaf sums of a register block on a small stack. No bias (a row-parallel bias is
// added once, after the ranks' partial sums are reduced). On the GPU (bf16 x / w, y f32
// contiguous): each leaf is the fixed-config GEMM over its K block (the deterministic
// mode's linear) into [leaves, T, N] f32 scratch taken from `ws` (required there, rewound),
// then the same tree (kernels/cuda/rank_tree_sum.h).
void linear_leaves(const Tensor& x, const Tensor& w, int leaves, const Tensor& y, Arena* ws = nullptr);
// Scratch linear_leaves takes from ws for N outputs on `device` (rows go in bounded chunks).
size_t linear_leaves_workspace_bytes(Device device, int64_t N, int leaves);

// Per-sequence geometry of a paged attention batch. Sequence b owns req_to_token row
// req_slots[b]; after this step it holds seq_lens[b] tokens, the last extend_lens[b] of
// which are this step's queries (decode: extend_lens[b] == 1). Its queries sit at rows
// [q_offsets[b], q_offsets[b] + extend_lens[b]) of q and out.
struct AttentionBatch {
  int32_t batch = 0;
  const int32_t* req_slots = nullptr;     // [B]
  const int32_t* seq_lens = nullptr;      // [B]
  const int32_t* extend_lens = nullptr;   // [B]
  const int32_t* q_offsets = nullptr;     // [B]
  const int32_t* req_to_token = nullptr;  // [max_reqs, max_context]: position -> kv slot
  int64_t max_context = 0;
  // GPU only: paged_attention_scratch_floats() floats of device scratch. When given, a step
  // of one query per sequence computes the KV splits of each query in parallel (same results).
  float* scratch = nullptr;
};

// Causal GQA attention through the paged KV pool: the query at absolute position p of a
// sequence attends to its keys at positions [0, p]. q [T, Hq, D]; k_cache, v_cache
// [slots, Hkv, D] (one layer); out [T, Hq, D]. q and out share a dtype (bf16 or f32);
// the caches have q's dtype, or are bf16 with f32 q (bf16 KV cache, fp32 activations).
// Softmax in fp32. Extend and decode run the same code; the KV is processed in fixed
// tiles of absolute positions so a query's result does not depend on how many other
// queries are in the step.
void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, float scale, const Tensor& out);

// Scratch floats the decode-split path of paged_attention wants for T queries of Hq heads
// (0: none; always 0 on the CPU).
size_t paged_attention_scratch_floats(Device device, int64_t T, int64_t Hq, int64_t D, int64_t max_context);

// out[t, :] = table[ids[t], :]
void embedding(const Tensor& table, const int32_t* ids, const Tensor& out);

// dst[rows[t], :] = src[t, :] (converted to dst's dtype) for every row t of src: K/V rows
// into their cache slots. src [T, ...] and dst [slots, ...] have the same row width.
void scatter_rows(const Tensor& src, const int32_t* rows, const Tensor& dst);

// y = x / sqrt(mean(x^2) + eps) * w, row-wise over the last dim; statistics in fp32.
void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y);

// Fused residual add + RMSNorm: residual += x (in residual's dtype), then
// y = rms_norm(residual). x may alias y.
void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& w, float eps, const Tensor& y);

// RMSNorm applied to each [D]-sized head of x [T, heads, D] in place (Qwen3 q/k norm).
void head_rms_norm(const Tensor& x, const Tensor& w, float eps);

// Rotary embedding (rotate-half / NeoX layout, as HF Llama-family models) in place on
// x [T, heads, D], token t at positions[t]; inv_freq [D/2] in fp32.
void rope(const Tensor& x, const int32_t* positions, const float* inv_freq);

// What attention_prep normalizes before RoPE: nothing, each head over its D features
// (Qwen3: weights [D]), or the whole q / k projection (OLMoE: weights [Hq*D] / [Hkv*D]).
enum class HeadNorm : uint8_t { kNone, kPerHead, kProjection };

// The step from a fused q|k|v projection to attention, in one pass per token (the GPU
// model's decode path; the CPU model runs the separate ops): qkv [T, (Hq + 2 Hkv) * D]
// (q heads, then k heads, then v heads) -> RMSNorm of q and k (`norm`, fp32 weights) ->
// RoPE of q and k at positions[t] -> q_out [T, Hq, D] (qkv's dtype); k and v rows stored
// in the caches [slots, Hkv, D] at cache_loc[t] in the caches' dtype. Computed in fp32,
// rounded once on store.
void attention_prep(const Tensor& qkv, int64_t heads, int64_t kv_heads, HeadNorm norm, const Tensor* q_norm,
                    const Tensor* k_norm, float eps, const int32_t* positions, const float* inv_freq,
                    const int32_t* cache_loc, const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache);

// y[T, I] = silu(gate[T, I]) * up[T, I]
void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& y);

// Softmax router in fp32 over logits [T, E]: picks the top-k experts per token (ties go
// to the lower expert id; slots in descending weight order), optionally renormalizes the
// k weights to sum 1. ids [T, k] int32, weights [T, k] fp32.
void route_topk_softmax(const Tensor& logits, int k, bool renormalize, int32_t* ids, float* weights);

// ---- Fused routed experts over stacked weights (the GPU model's MoE) -----------------
// w13 [E, 2I, H] (rows [0, I) gate_proj, [I, 2I) up_proj of each expert), w2 [E, H, I]
// (down_proj). ids/weights [T, k] (route_topk_softmax's output) -> slot_out [T*k, H] f32:
// row token*k+slot = weight * down(silu(gate x) * up x) for that slot's expert. The CUDA
// version groups pairs by expert on the device and runs two grouped tensor-core GEMMs
// (bf16 only; scratch from `ws`, rewound on return); the CPU version is the plain
// reference loop it is tested against (the CPU model runs its experts through
// layers/moe.cpp instead, which also serves every parallel layout).
// Expert parallelism: w13 / w2 may hold only experts [expert0, expert0 + E_local) of the
// router's `router_experts` (0: E_local, all of them); ids stay global, and pairs routed to
// other experts get all-zero rows.
void moe_experts(const Tensor& x, const int32_t* ids, const float* weights, int k, const Tensor& w13,
                 const Tensor& w2, Arena& ws, const Tensor& slot_out, int64_t expert0 = 0, int64_t router_experts = 0);
// Scratch moe_experts takes from `ws` for T tokens on `device` (an upper bound; 0 on CPU).
size_t moe_experts_workspace_bytes(Device device, int64_t T, int k, int64_t E, int64_t H, int64_t I);
// out[t] = sum over slots in slot order (fp32) of slot_out[t*k + s], plus
// sigmoid(shared_logit[t]) * shared_out[t] when given (Qwen2-MoE's gated shared expert).
// slot_out is f32; on the GPU also bf16 (fused_moe's slot values on the wgmma path).
void moe_combine(const Tensor& slot_out, int k, const Tensor* shared_out, const Tensor* shared_logit,
                 const Tensor& out);

// Deterministic mode on the GPU: the UNWEIGHTED value of every (token, slot) pair, values
// [T*k, H] f32 (row token*k+slot): gate / up as moe_experts, the down projection with I cut
// into `leaves` equal blocks (each the fixed-config GEMM over its block) combined by the
// fixed tree, so a MoE-TP rank's values are a subtree of the single-rank values and a
// rank-order all-reduce completes them. Pairs routed outside the local experts [expert0,
// expert0 + E_local) of `router_experts` are -0.0 (x + -0.0 == x: they vanish in that
// all-reduce). Tokens go through in chunks (each row's bits do not depend on the others),
// so the scratch from ws is bounded: moe_expert_values_workspace_bytes. GPU only.
void moe_expert_values(const Tensor& x, const int32_t* ids, int k, const Tensor& w13, const Tensor& w2, int leaves,
                       int64_t expert0, int64_t router_experts, Arena& ws, const Tensor& values);
size_t moe_expert_values_workspace_bytes(int k, int64_t E, int64_t H, int64_t I, int leaves);
// out[t] = sum over slots s in slot order of weights[t*k+s] * values[t*k+s] (fp32), plus
// sigmoid(shared_logit[t]) * shared_out[t] when given: the deterministic combine of the
// values above (moe_combine with the routing weights applied here instead of in the GEMM).
void moe_combine_weighted(const Tensor& values, const float* weights, int k, const Tensor* shared_out,
                          const Tensor* shared_logit, const Tensor& out);

// dst [R, C] f32 = the fixed pairwise tree ((b0 + b1) + (b2 + b3)) ... over the `blocks`
// consecutive [R, C] blocks of src [blocks * R, C] f32 (the rank-order sum of MoE-TP parts).
void tree_sum_blocks(const Tensor& src, int blocks, const Tensor& dst);

// The routed MoE block after the router GEMM: route_topk_softmax(logits) -> moe_experts ->
// moe_combine (with the gated shared expert when given), in one call so the GPU can fuse
// them for decode-sized batches (kernels/cuda/moe_skinny.cu; same routing bits, the
// experts' dot products in another order than the grouped GEMMs, default mode only).
// x [T, H], logits [T, E] f32, stacked w13/w2 as above -> out [T, H]. Scratch from ws.
// With expert parallelism (w13 / w2 holding experts [expert0, expert0 + E_local) of the
// logits' E), out sums only the local experts' slots: the rank's partial of the block.
void fused_moe(const Tensor& x, const Tensor& logits, int k, bool renormalize, const Tensor& w13, const Tensor& w2,
               const Tensor* shared_out, const Tensor* shared_logit, Arena& ws, const Tensor& out,
               int64_t expert0 = 0);

// Greedy choice per row of f32 logits [R, V]: out[r] = the first index of the row's
// maximum (strict '>' scanning up, so ties go to the lower id; NaN never wins over a
// number, except at index 0 on the CPU, as a plain scan does). `out` is a device pointer
// when logits are on the GPU.
void argmax_rows(const Tensor& logits, int32_t* out);

// Edits f32 logits [R, V] in place before sampling: each of edits[0, n) (distinct (row,
// token) pairs) by LogitEdit's arithmetic, bit-identical on the CPU and the GPU; saved
// (when not null) [n] receives each edited logit as it was. `edits` and `saved` are device
// pointers when logits are on the GPU (their ids are not range-checked there: the host
// that built them checks).
void apply_logit_edits(const Tensor& logits, const LogitEdit* edits, int64_t n, float* saved);
// Undoes apply_logit_edits: saved[i] back at edits[i]'s place.
void restore_logits(const Tensor& logits, const LogitEdit* edits, int64_t n, const float* saved);

// One token per row of f32 logits [R, V], drawn as params[r] says (the sampler's choice
// once penalties and masks are applied). A forced row (params[r].forced >= 0, a teacher-
// forced prompt position) gets that token, no draw. Temperature 0: argmax_rows' choice. Otherwise
// the candidates are the row's tokens sorted by logit (descending, ties to the lower id),
// cut to the first top_k; p_i = exp(l_i / T - max / T) over them; the kept prefix ends
// before the first token with p_i < min_p * p_max, and at the first token where the
// cumulative mass (p_i / sum) reaches top_p; the token is the kept one with the largest
// log p_i + Gumbel noise keyed on (seed, position, token id) (keyed_uniform, core/hash.h),
// so a row's draw depends on its logits and parameters alone, never on the batch. sum is
// the candidates' p_i in double, added in id order. The CPU code sorts only the head of
// the order its cuts need (kernels/reference/sampling_ref.h sorts it all); the GPU selects
// the cut points by radix passes and sums the masses in fixed point (the cuts may differ
// only where a cumulative mass is within ~1e-9 of top_p: docs/numerics.md). `params` and `out` are device pointers when
// logits are on the GPU.
void sample_rows(const Tensor& logits, const RowSampling* params, int32_t* out);

// The output logprobs of each row's chosen token chosen[r], for rows with params[r].top_n
// >= 0 (others are left untouched): under the row's log-softmax lp_i = l_i - lse (fp32,
// exactly ops::log_softmax's definition), out[r].logprob = lp at chosen[r], the
// min(top_n, V) largest lp in descending order, ties to the lower id (kernels/logprobs.h
// top_n), and lp at each of params[r].ids. CPU: ops::log_softmax of the row, then a partial
// sort. GPU: one cluster per row; the normalizer's reduction order and the radix-selected
// top-N are in docs/numerics.md. `chosen`, `params` and `out` are device pointers when
// logits are on the GPU.
void row_logprobs(const Tensor& logits, const int32_t* chosen, const RowLogprobs* params, RowLogprobsOut* out);

// An executor's choice for a step it samples (ForwardBatch::sampling, logit_edits,
// logprobs): apply_logit_edits, sample_rows; then, with lp_params, row_logprobs of the
// chosen tokens under the logits as given (the edits undone first: the host path reports
// logprobs before its penalties). The logits are as given again on return. saved: [n]
// scratch. Every pointer is on the logits' device.
void sample_edited_rows(const Tensor& logits, const LogitEdit* edits, int64_t n, float* saved, const RowSampling* params,
                        int32_t* out, const RowLogprobs* lp_params, RowLogprobsOut* lp_out);

// Row-wise log-softmax in fp32: out[T, V] f32 from logits [T, V] (any float dtype).
void log_softmax(const Tensor& logits, const Tensor& out);

}  // namespace sparrow::ops
