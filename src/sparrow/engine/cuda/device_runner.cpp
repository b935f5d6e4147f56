#include "sparrow/engine/cuda/device_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "sparrow/core/cuda/device.h"
#include "sparrow/core/log.h"
#include "sparrow/kernels/cuda/ops_cuda.h"
#include "sparrow/model/layers/step_context.h"

namespace sparrow {
namespace {

// Decode batch sizes that get a graph: every size up to 8, then steps that grow with the
// size (the padding a batch pays is at most ~1/8 of it).
std::vector<int64_t> graph_buckets(int64_t max_bs) {
  std::vector<int64_t> b;
  for (int64_t s = 1; s <= max_bs;) {
    b.push_back(s);
    s += s < 8 ? 1 : s < 32 ? 4 : s < 64 ? 8 : s < 128 ? 16 : 32;
  }
  if (!b.empty() && b.back() != max_bs) b.push_back(max_bs);
  return b;
}

}  // namespace

struct DeviceRunner::Impl {
  ModelConfig config;
  DeviceOptions opts;
  int world = 1;  // ranks of the deployment (NCCL when above 1)
  cuda::Stream stream;
  std::unique_ptr<cuda::DeviceArena> arena;
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<KVPool> kv;
  int64_t kv_slots = 0;  // usable slots; slot `kv_slots` is the padding sequences' scratch slot
  int64_t t_max = 0, b_max = 0, ctx = 0;
  // Device copies of the step arrays at fixed addresses (graphs bake them in):
  // ids | positions | cache_loc | logit_rows [t_max each], seq_lens | extend_lens | q_offsets [b_max each].
  int32_t* d_small = nullptr;
  int32_t* d_req_slots = nullptr;  // 0, 1, ..., b_max-1: sequence b reads table row b
  int32_t* d_table = nullptr;      // [b_max, ctx]: the batch's req_to_token rows, compacted
  Tensor d_logits;                 // [graph max bs, V] f32: graph replays write here
  // Sampled rows at a time (out_rows: the largest graph bucket, or an eager step's lm_head
  // chunk of CausalLM::kLogitChunkRows if larger):
  int64_t out_rows = 0;
  int32_t* d_chosen = nullptr;           // [out_rows]: sampled rows' token ids
  RowSampling* d_sampling = nullptr;     // [out_rows]: their parameters
  RowLogprobs* d_lp_params = nullptr;    // [out_rows]: what each row reports (batch.logprobs)
  RowLogprobsOut* d_lp_out = nullptr;    // [out_rows]: ops::row_logprobs
  LogitEdit* d_edits = nullptr;          // [kMaxStepLogitEdits]: the sampled rows' penalties and masks
  float* d_saved = nullptr;              // [kMaxStepLogitEdits]: the edited logits' originals
  Buffer h_small, h_table, h_sampling;   // pinned staging (uploads are asynchronous DMA)
  Buffer h_lp_params, h_lp_out;          // pinned staging of the logprobs rows
  Buffer h_edits;                        // pinned staging of the edits
  std::vector<int64_t> buckets;
  std::map<int64_t, cudaGraphExec_t> graphs;

  size_t small_count() const { return size_t(4 * t_max + 3 * b_max); }
  int32_t* small(int i) const { return d_small + (i < 4 ? i * t_max : 4 * t_max + (i - 4) * b_max); }
  int32_t* h_at(int i) const {
    return static_cast<int32_t*>(h_small.data()) + (i < 4 ? i * t_max : 4 * t_max + (i - 4) * b_max);
  }
  int32_t* h_rows() const { return static_cast<int32_t*>(h_table.data()); }

  BatchArrays arrays(int32_t batch) const {
    BatchArrays a;
    a.ids = small(0);
    a.positions = small(1);
    a.cache_loc = small(2);
    a.logit_rows = small(3);
    a.attention.batch = batch;
    a.attention.req_slots = d_req_slots;
    a.attention.seq_lens = small(4);
    a.attention.extend_lens = small(5);
    a.attention.q_offsets = small(6);
    a.attention.req_to_token = d_table;
    a.attention.max_context = ctx;
    return a;
  }

  // Chooses rows [r0, r0 + n) of a sampled step on the device: `logits` holds them (f32 [n,
  // V], device memory). Uploads the rows' RowSampling, their logit edits (rebased to the
  // chunk; batch.logit_edits are in row order: *edit is the first not yet uploaded) and
  // with `logprobs` their RowLogprobs; runs ops::sample_edited_rows; copies the ids to
  // chosen[r0, r0 + n) and the logprobs rows to logprobs[r0, r0 + n) (host), and the
  // logits of the batch's host rows among them to those rows of host_logits (*host: the
  // first host row not yet copied). Returns when they are there.
  void sample(const Tensor& logits, const ForwardBatch& batch, int64_t r0, size_t* edit, size_t* host,
              const Tensor& host_logits, int32_t* chosen, RowLogprobsOut* logprobs) {
    const int64_t n = logits.size(0);
    SPARROW_CHECK(n <= out_rows && r0 + n <= int64_t(batch.sampling.size()),
                  "sampling rows [{}, {}) of {} (device buffers of {})", r0, r0 + n, batch.sampling.size(), out_rows);
    const cudaStream_t s = stream.get();
    std::memcpy(h_sampling.data(), batch.sampling.data() + r0, size_t(n) * sizeof(RowSampling));
    SPARROW_CUDA_CHECK(
        cudaMemcpyAsync(d_sampling, h_sampling.data(), size_t(n) * sizeof(RowSampling), cudaMemcpyHostToDevice, s));
    int64_t num_edits = 0;
    auto* h_e = static_cast<LogitEdit*>(h_edits.data());
    for (; *edit < batch.logit_edits.size() && batch.logit_edits[*edit].row < r0 + n; ++*edit, ++num_edits) {
      LogitEdit e = batch.logit_edits[*edit];
      SPARROW_CHECK(e.row >= r0, "logit edits out of row order (row {} after rows from {})", e.row, r0);
      SPARROW_CHECK(num_edits < kMaxStepLogitEdits, "more than {} logit edits in a step", kMaxStepLogitEdits);
      e.row -= int32_t(r0);
      h_e[num_edits] = e;
    }
    if (num_edits > 0)  // the rows' penalties and masks: a few bytes per penalized token
      SPARROW_CUDA_CHECK(cudaMemcpyAsync(d_edits, h_e, size_t(num_edits) * sizeof(LogitEdit), cudaMemcpyHostToDevice, s));
    if (logprobs) {  // the chosen tokens' logprobs, top-N and ids: a few floats per row come back
      SPARROW_CHECK(batch.logprobs.size() == batch.sampling.size(), "one RowLogprobs per row");
      std::memcpy(h_lp_params.data(), batch.logprobs.data() + r0, size_t(n) * sizeof(RowLogprobs));
      SPARROW_CUDA_CHECK(cudaMemcpyAsync(d_lp_params, h_lp_params.data(), size_t(n) * sizeof(RowLogprobs),
                                         cudaMemcpyHostToDevice, s));
    }
    ops::sample_edited_rows(logits, d_edits, num_edits, d_saved, d_sampling, d_chosen, logprobs ? d_lp_params : nullptr,
                            logprobs ? d_lp_out : nullptr);
    for (; *host < batch.host_rows.size() && batch.host_rows[*host] < r0 + n; ++*host) {
      const int64_t r = batch.host_rows[*host];
      SPARROW_CHECK(r >= r0 && r < host_logits.size(0), "host row {} out of order or past the logits buffer", r);
      SPARROW_CUDA_CHECK(cudaMemcpyAsync(host_logits.row_ptr(r), logits.row_ptr(r - r0), size_t(logits.size(1)) * 4,
                                         cudaMemcpyDeviceToHost, s));
    }
    if (logprobs)
      SPARROW_CUDA_CHECK(cudaMemcpyAsync(h_lp_out.data(), d_lp_out, size_t(n) * sizeof(RowLogprobsOut),
                                         cudaMemcpyDeviceToHost, s));
    cuda::copy_bytes(chosen + r0, d_chosen, size_t(n) * sizeof(int32_t), cudaMemcpyDeviceToHost);  // waits
    if (logprobs) std::memcpy(logprobs + r0, h_lp_out.data(), size_t(n) * sizeof(RowLogprobsOut));
  }

  // Packs `b` (padded with `pad` one-token sequences on the scratch slot) and uploads it.
  void upload(const ForwardBatch& b, const ReqToTokenPool* table, int64_t pad) {
    const int64_t t = b.num_tokens(), n = b.batch_size(), rows = int64_t(b.logit_rows.size());
    SPARROW_CHECK(t + pad <= t_max && n + pad <= b_max, "step of {} tokens / {} sequences exceeds the device runner's {} / {}",
                  t + pad, n + pad, t_max, b_max);
    std::memcpy(h_at(0), b.input_ids.data(), size_t(t) * 4);
    std::memcpy(h_at(1), b.positions.data(), size_t(t) * 4);
    std::memcpy(h_at(2), b.out_cache_loc.data(), size_t(t) * 4);
    std::memcpy(h_at(3), b.logit_rows.data(), size_t(rows) * 4);
    std::memcpy(h_at(4), b.seq_lens.data(), size_t(n) * 4);
    std::memcpy(h_at(5), b.extend_lens.data(), size_t(n) * 4);
    std::memcpy(h_at(6), b.token_offsets.data(), size_t(n) * 4);
    int64_t width = pad > 0 ? 1 : 0;
    for (int32_t len : b.seq_lens) width = std::max<int64_t>(width, len);
    SPARROW_CHECK(width <= ctx, "sequence of {} tokens exceeds the context {}", width, ctx);
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(h_rows() + i * width, table->table() + int64_t(b.req_slots[size_t(i)]) * table->max_context(),
                  size_t(b.seq_lens[size_t(i)]) * 4);
    for (int64_t i = 0; i < pad; ++i) {
      const int64_t row = t + i, seq = n + i;
      h_at(0)[row] = 0;
      h_at(1)[row] = 0;
      h_at(2)[row] = int32_t(kv_slots);
      h_at(3)[rows + i] = int32_t(row);
      h_at(4)[seq] = 1;
      h_at(5)[seq] = 1;
      h_at(6)[seq] = int32_t(row);
      h_rows()[seq * width] = int32_t(kv_slots);
    }
    const cudaStream_t s = stream.get();
    SPARROW_CUDA_CHECK(cudaMemcpyAsync(d_small, h_small.data(), small_count() * 4, cudaMemcpyHostToDevice, s));
    if (width > 0)
      SPARROW_CUDA_CHECK(cudaMemcpy2DAsync(d_table, size_t(ctx) * 4, h_rows(), size_t(width) * 4, size_t(width) * 4,
                                           size_t(n + pad), cudaMemcpyHostToDevice, s));
  }

  void capture_graphs() {
    for (int64_t bs : buckets) {
      const ForwardBatch empty;  // upload() makes it bs padding sequences
      ForwardBatch shape;  // the host view forward() sizes itself by: bs one-token sequences
      shape.mode = ForwardMode::kDecode;
      for (int64_t i = 0; i < bs; ++i) {
        const int32_t id = 0, slot = int32_t(kv_slots);
        shape.add_sequence(int32_t(i), 0, &id, &slot, 1);
        shape.logit_rows.push_back(int32_t(i));
      }
      upload(empty, nullptr, bs);
      const Tensor out = d_logits.slice_rows(0, bs);
      // Warm-up outside the capture: cuBLASLt plans, kernel attributes.
      model->forward(shape, arrays(int32_t(bs)), *kv, arena->workspace(), out);
      cudaGraph_t graph = nullptr;
      SPARROW_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
      try {
        model->forward(shape, arrays(int32_t(bs)), *kv, arena->workspace(), out);
      } catch (...) {
        (void)cudaStreamEndCapture(stream.get(), &graph);
        throw;
      }
      SPARROW_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
      cudaGraphExec_t exec = nullptr;
      SPARROW_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      SPARROW_CUDA_CHECK(cudaGraphDestroy(graph));
      graphs[bs] = exec;
      stream.synchronize();  // the pinned staging is rewritten for the next bucket
    }
  }
};

DeviceRunner::DeviceRunner(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype,
                           const RankContext& rank, const DeviceOptions& opts)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.config = c;
  m.opts = opts;
  m.world = rank.mesh.world;
  // Decode graphs bake in every kernel and collective of a step. Several DP groups run
  // different batches and exchange their token counts on the host each step, which a graph
  // cannot hold: those layouts run eagerly (SGLang pads DP groups to one graph size instead).
  // The alltoall MoE sizes its exchanges on the host each layer, likewise.
  const bool host_sized = rank.mesh.attn_dp > 1 || (rank.mesh.world > 1 && rank.a2a == MoeA2ABackend::kAllToAll);
  if (host_sized && opts.cuda_graphs) {
    if (rank.rank == 0)
      log(LogLevel::kInfo, "device: CUDA graphs off with DP attention or the alltoall MoE ({})", rank.mesh.describe());
    m.opts.cuda_graphs = false;
  }
  const bool cuda_graphs = m.opts.cuda_graphs;
  cuda::StreamGuard guard(m.stream.get());
  cuda::set_deterministic(rank.deterministic);
  m.ctx = opts.max_context;
  m.b_max = std::max<int64_t>(opts.max_batch, cuda_graphs ? opts.cuda_graph_max_bs : 1);
  m.t_max = std::max(opts.max_step_tokens, m.b_max);
  if (cuda_graphs) m.buckets = graph_buckets(opts.cuda_graph_max_bs);
  const int64_t graph_rows = m.buckets.empty() ? 0 : m.buckets.back();

  // Measure the weights with a dry run (fake addresses, nothing read), then plan memory.
  Arena dry("dry run", reinterpret_cast<void*>(uintptr_t(1) << 44), size_t(1) << 43, Device::kCUDA);
  const auto probe = std::make_unique<CausalLM>(c, source, dtype, rank, WeightPlacement{&dry, true});
  const size_t weights = dry.used();
  const size_t inputs = (m.small_count() + size_t(m.b_max) + size_t(m.b_max * m.ctx)) * 4 + 4 * 256;
  // MoE layers may see every DP group's tokens.
  // Graph replays' logits; sampled rows' ids, parameters and logprobs rows (a graph bucket
  // or an eager lm_head chunk at a time); the logit edits (a fixed capacity: a step with
  // more samples on the host, Scheduler::plan).
  m.out_rows = std::max(graph_rows, CausalLM::kLogitChunkRows);
  const size_t edits = size_t(kMaxStepLogitEdits) * (sizeof(LogitEdit) + 4);
  const size_t graph_out = size_t(graph_rows) * size_t(c.vocab_size) * 4 +
                           size_t(m.out_rows) * (4 + sizeof(RowSampling) + sizeof(RowLogprobs) + sizeof(RowLogprobsOut)) +
                           edits + 6 * 256;
  const size_t workspace = probe->workspace_bytes(m.t_max * rank.mesh.attn_dp, m.ctx) + inputs + graph_out + 256;
  cuda::MemoryPlan plan = cuda::plan_memory(weights, workspace, opts.mem_fraction_static);
  const int64_t kv_heads = probe->local_kv_heads();
  const size_t per_token = KVPool::bytes_per_token(c.num_layers, kv_heads, c.head_dim, kv_dtype);
  const int64_t fit = int64_t(plan.kv_bytes / per_token);
  const int64_t want = opts.kv_slots > 0 ? opts.kv_slots + 1 : fit;
  SPARROW_REQUIRE(want <= fit && want >= 2, "KV pool: {} slots wanted, {} fit in the memory left after weights ({:.2f} GiB) "
                  "and workspace ({:.2f} GiB) under --mem-fraction-static {}", want, fit, double(weights) / (1 << 30),
                  double(workspace) / (1 << 30), opts.mem_fraction_static);
  m.kv_slots = want - 1;  // the extra slot is the padding sequences' scratch
  // A pool of a given size (--max-total-tokens) takes only what it needs.
  // (Each layer's K and V are separate 256-aligned tensors of the region.)
  if (opts.kv_slots > 0)
    plan.kv_bytes = size_t(2 * c.num_layers) * ((size_t(want) * per_token / size_t(2 * c.num_layers) + 255) / 256 * 256);

  m.arena = std::make_unique<cuda::DeviceArena>(plan);
  m.model = std::make_unique<CausalLM>(c, source, dtype, rank, WeightPlacement{&m.arena->weights(), false});
  m.kv = std::make_unique<KVPool>(c.num_layers, want, kv_heads, c.head_dim, kv_dtype, m.arena->kv());
  Arena& ws = m.arena->workspace();
  m.d_small = ws.alloc_array<int32_t>(m.small_count());
  m.d_req_slots = ws.alloc_array<int32_t>(size_t(m.b_max));
  m.d_table = ws.alloc_array<int32_t>(size_t(m.b_max * m.ctx));
  if (graph_rows > 0) m.d_logits = ws.alloc(DType::kF32, {graph_rows, c.vocab_size});
  {
    const int64_t r = m.out_rows;
    m.d_chosen = ws.alloc_array<int32_t>(size_t(r));
    m.d_sampling = ws.alloc_array<RowSampling>(size_t(r));
    static_assert(sizeof(RowSampling) % 4 == 0);
    m.h_sampling = cuda::pinned_buffer(DType::kI32, {r * int64_t(sizeof(RowSampling) / 4)});
    m.d_lp_params = ws.alloc_array<RowLogprobs>(size_t(r));
    m.d_lp_out = ws.alloc_array<RowLogprobsOut>(size_t(r));
    static_assert(sizeof(RowLogprobs) % 4 == 0 && sizeof(RowLogprobsOut) % 4 == 0);
    m.h_lp_params = cuda::pinned_buffer(DType::kI32, {r * int64_t(sizeof(RowLogprobs) / 4)});
    m.h_lp_out = cuda::pinned_buffer(DType::kI32, {r * int64_t(sizeof(RowLogprobsOut) / 4)});
    m.d_edits = ws.alloc_array<LogitEdit>(size_t(kMaxStepLogitEdits));
    m.d_saved = ws.alloc_array<float>(size_t(kMaxStepLogitEdits));
    static_assert(sizeof(LogitEdit) % 4 == 0);
    m.h_edits = cuda::pinned_buffer(DType::kI32, {kMaxStepLogitEdits * int64_t(sizeof(LogitEdit) / 4)});
  }
  m.h_small = cuda::pinned_buffer(DType::kI32, {int64_t(m.small_count())});
  m.h_table = cuda::pinned_buffer(DType::kI32, {m.b_max * m.ctx});
  {
    std::vector<int32_t> iota(static_cast<size_t>(m.b_max));
    for (size_t i = 0; i < iota.size(); ++i) iota[i] = int32_t(i);
    cuda::copy_bytes(m.d_req_slots, iota.data(), iota.size() * 4, cudaMemcpyHostToDevice);
  }
  const cuda::DeviceInfo info = cuda::device_info();
  if (rank.rank == 0)
    log(LogLevel::kInfo, "device: {} ({} SMs, {:.1f} GiB): weights {:.2f} GiB, KV {:.2f} GiB ({} slots), workspace {:.2f} GiB",
      info.name, info.sm_count, double(info.total_mem) / (1 << 30), double(plan.weights_bytes) / (1 << 30),
      double(plan.kv_bytes) / (1 << 30), m.kv_slots, double(plan.workspace_bytes) / (1 << 30));
  if (!m.buckets.empty()) {
    m.capture_graphs();
    if (rank.rank == 0)
      log(LogLevel::kInfo, "device: {} decode CUDA graphs captured (batch 1..{})", m.graphs.size(), graph_rows);
  }
}

DeviceRunner::~DeviceRunner() {
  for (auto& [bs, exec] : impl_->graphs) (void)cudaGraphExecDestroy(exec);
  (void)cudaStreamSynchronize(impl_->stream.get());  // (no throwing from a destructor)
  ops::cuda::release_stream_workspace(impl_->stream.get());
}

int64_t DeviceRunner::kv_slots() const { return impl_->kv_slots; }
size_t DeviceRunner::kv_bytes_per_token() const { return impl_->kv->bytes_per_token(); }

void DeviceRunner::step(const ForwardBatch& batch, const ReqToTokenPool& table, const Tensor& logits, int32_t* chosen,
                        RowLogprobsOut* logprobs) {
  Impl& m = *impl_;
  cuda::StreamGuard guard(m.stream.get());
  SPARROW_CHECK(table.max_context() <= m.ctx, "req_to_token rows of {} exceed the device table's {}", table.max_context(), m.ctx);
  const int64_t n = batch.batch_size();
  if (batch.num_tokens() == 0 && m.world == 1) return;  // (ranks of a world join its collectives)
  const bool output = logits.data() != nullptr || chosen != nullptr;
  // A decode batch whose logits are its sequences' rows in order replays a graph.
  bool plain_decode = batch.mode == ForwardMode::kDecode && int64_t(batch.logit_rows.size()) == n &&
                      batch.num_tokens() == n;
  for (int64_t i = 0; plain_decode && i < n; ++i) plain_decode = batch.logit_rows[size_t(i)] == i;
  const auto it = plain_decode ? m.graphs.lower_bound(n) : m.graphs.end();
  if (it != m.graphs.end()) {
    m.upload(batch, &table, it->first - n);
    SPARROW_CUDA_CHECK(cudaGraphLaunch(it->second, m.stream.get()));
    if (!batch.sampling.empty() && chosen) {
      size_t edit = 0, host = 0;
      m.sample(m.d_logits.slice_rows(0, n), batch, 0, &edit, &host, logits, chosen,
               batch.logprobs.empty() ? nullptr : logprobs);
      return;
    }
    if (output) ops::copy(logits, m.d_logits.slice_rows(0, n));  // waits for the replay
    else m.stream.synchronize();  // the pinned staging is rewritten by the next step
    return;
  }
  m.upload(batch, &table, 0);
  if (!batch.sampling.empty() && chosen) {
    // An eager sampled step chooses on the device too, each lm_head chunk as it is computed:
    // no [rows, V] copy to the host (a prompt's input logprobs: a row per position).
    size_t edit = 0, host = 0;
    RowLogprobsOut* lp = batch.logprobs.empty() ? nullptr : logprobs;
    const CausalLM::LogitSink sink = [&](int64_t r0, const Tensor& chunk) {
      m.sample(chunk, batch, r0, &edit, &host, logits, chosen, lp);
    };
    m.model->forward(batch, m.arrays(int32_t(n)), *m.kv, m.arena->workspace(), sink);
    SPARROW_CHECK(edit == batch.logit_edits.size() && host == batch.host_rows.size(),
                  "logit edits / host rows name rows past the step's ({} of {}, {} of {} consumed)", edit,
                  batch.logit_edits.size(), host, batch.host_rows.size());
    m.stream.synchronize();
    return;
  }
  m.model->forward(batch, m.arrays(int32_t(n)), *m.kv, m.arena->workspace(), logits);
  m.stream.synchronize();
}

}  // namespace sparrow
