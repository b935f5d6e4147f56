// ops::paged_attention: validation, then the active ISA's kernel run in parallel over
// (KV head, sequence, block of query rows) work items. Items never share outputs or
// partial sums, so the result is independent of the thread count.
#include <algorithm>
#include <vector>

#include "sparrow/core/thread_pool.h"
#include "sparrow/kernels/cpu/attention_kernels.h"
#include "sparrow/kernels/cpu/cpu_features.h"
#include "sparrow/kernels/ops.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/kernels/cuda/ops_cuda.h"
#endif
#include "sparrow/kernels/reference/attention_ref.h"

namespace sparrow::ops {

size_t paged_attention_scratch_floats(Device device, int64_t T, int64_t Hq, int64_t D, int64_t max_context) {
#ifdef SPARROW_HAVE_CUDA
  if (device == Device::kCUDA) return cuda::paged_attention_scratch_floats(T, Hq, D, max_context);
#endif
  return 0;
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                     const AttentionBatch& batch, float scale, const Tensor& out) {
#ifdef SPARROW_HAVE_CUDA
  if (q.device() == Device::kCUDA) return cuda::paged_attention(q, k_cache, v_cache, batch, scale, out);
#endif
  SPARROW_REQUIRE(q.device() == Device::kCPU && k_cache.device() == Device::kCPU &&
                      v_cache.device() == Device::kCPU && out.device() == Device::kCPU,
                  "paged_attention: CPU tensors expected");
  SPARROW_REQUIRE(q.rank() == 3 && k_cache.rank() == 3 && v_cache.rank() == 3 && out.rank() == 3,
                  "paged_attention: q, k_cache, v_cache, out must be rank 3");
  SPARROW_REQUIRE(q.is_contiguous() && k_cache.is_contiguous() && v_cache.is_contiguous() &&
                      out.is_contiguous(),
                  "paged_attention: tensors must be contiguous");
  const DType dt = q.dtype(), kvt = k_cache.dtype();
  SPARROW_REQUIRE(dt == DType::kBF16 || dt == DType::kF32,
                  "paged_attention: dtype must be bf16 or f32, got {}", dtype_name(dt));
  SPARROW_REQUIRE(out.dtype() == dt, "paged_attention: out dtype {} must match q dtype {}",
                  dtype_name(out.dtype()), dtype_name(dt));
  SPARROW_REQUIRE(v_cache.dtype() == kvt && (kvt == dt || (dt == DType::kF32 && kvt == DType::kBF16)),
                  "paged_attention: k_cache/v_cache must share q's dtype, or be bf16 with f32 q "
                  "(got q {}, k {}, v {})",
                  dtype_name(dt), dtype_name(kvt), dtype_name(v_cache.dtype()));
  const int64_t T = q.size(0), Hq = q.size(1), D = q.size(2);
  const int64_t slots = k_cache.size(0), Hkv = k_cache.size(1);
  SPARROW_REQUIRE(out.shape() == q.shape(), "paged_attention: out {} must match q {}",
                  out.shape().str(), q.shape().str());
  SPARROW_REQUIRE(v_cache.shape() == k_cache.shape(), "paged_attention: v_cache {} != k_cache {}",
                  v_cache.shape().str(), k_cache.shape().str());
  SPARROW_REQUIRE(k_cache.size(2) == D && D > 0, "paged_attention: head dim mismatch");
  SPARROW_REQUIRE(Hkv > 0 && Hq % Hkv == 0, "paged_attention: Hq {} not a multiple of Hkv {}",
                  Hq, Hkv);
  SPARROW_REQUIRE(batch.batch >= 0, "paged_attention: negative batch");
  if (batch.batch == 0) return;
  SPARROW_REQUIRE(batch.req_slots && batch.seq_lens && batch.extend_lens && batch.q_offsets &&
                      batch.req_to_token,
                  "paged_attention: null batch array");
  int64_t total_items = 0;
  for (int32_t b = 0; b < batch.batch; ++b) {
    const int64_t seq = batch.seq_lens[b], ext = batch.extend_lens[b], off = batch.q_offsets[b];
    SPARROW_REQUIRE(ext >= 0 && ext <= seq && seq <= batch.max_context,
                    "paged_attention: sequence {}: extend {} seq {} max_context {}", b, ext, seq,
                    batch.max_context);
    SPARROW_REQUIRE(off >= 0 && off + ext <= T, "paged_attention: sequence {} rows [{}, {}) outside q [{}]",
                    b, off, off + ext, T);
    SPARROW_REQUIRE(batch.req_slots[b] >= 0, "paged_attention: negative req slot");
    if (ext == 0) continue;
    const int32_t* r2t = batch.req_to_token + int64_t(batch.req_slots[b]) * batch.max_context;
    for (int64_t j = 0; j < seq; ++j)
      SPARROW_REQUIRE(r2t[j] >= 0 && r2t[j] < slots,
                      "paged_attention: sequence {} position {} maps to slot {} outside [0, {})", b,
                      j, r2t[j], slots);
    total_items += (ext + cpu::kAttnRowBlock - 1) / cpu::kAttnRowBlock;
  }
  if (total_items == 0) return;

  const cpu::Isa isa = cpu::active_isa();
  if (isa == cpu::Isa::kReference || D % 16 != 0) {
    ref::paged_attention(q, k_cache, v_cache, batch, scale, out);
    return;
  }

  // Work items: (KV head range, sequence, block of query rows). Heads are grouped so a
  // slot's KV rows are read together, split only as far as needed to give every thread
  // work. Row blocks are listed in zigzag order (first, last, second, ...) so that the
  // contiguous chunk each thread gets has a balanced share of cheap early rows and
  // expensive late rows.
  const int64_t threads = ThreadPool::global().size();
  const int64_t want = 2 * threads;
  const int64_t head_chunks = std::min<int64_t>(Hkv, std::max<int64_t>(1, (want + total_items - 1) / total_items));
  const int64_t hc = (Hkv + head_chunks - 1) / head_chunks;
  thread_local std::vector<cpu::AttnItem> blocks, items;
  blocks.clear();
  items.clear();
  for (int32_t b = 0; b < batch.batch; ++b) {
    const int32_t ext = batch.extend_lens[b];
    for (int32_t r0 = 0; r0 < ext; r0 += cpu::kAttnRowBlock)
      blocks.push_back({b, 0, 0, r0, std::min(ext, r0 + cpu::kAttnRowBlock)});
  }
  for (int64_t g0 = 0; g0 < Hkv; g0 += hc)
    for (size_t i = 0, n = blocks.size(); i < n; ++i) {
      cpu::AttnItem it = blocks[i % 2 == 0 ? i / 2 : n - 1 - i / 2];
      it.g0 = int32_t(g0);
      it.g1 = int32_t(std::min(Hkv, g0 + hc));
      items.push_back(it);
    }
  cpu::AttnArgs a;
  a.q = q.data();
  a.k = k_cache.data();
  a.v = v_cache.data();
  a.out = out.data();
  a.dt = dt;
  a.kvt = kvt;
  a.Hq = Hq;
  a.Hkv = Hkv;
  a.D = D;
  a.batch = &batch;
  a.scale = scale;
  auto* kernel = isa == cpu::Isa::kAvx512 ? &cpu::attention_avx512 : &cpu::attention_avx2;
  const cpu::AttnItem* it = items.data();
  ThreadPool::global().parallel_for(int64_t(items.size()),
                                    [&](int64_t i0, int64_t i1) { kernel(a, it + i0, i1 - i0); });
}

}  // namespace sparrow::ops
