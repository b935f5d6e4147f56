#include "sparrow/engine/model_executor.h"

#include <cstdio>
#include <cstdlib>

#include "sparrow/core/log.h"
#include "sparrow/kernels/ops.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/core/cuda/device.h"
#include "sparrow/engine/cuda/device_runner.h"
#else
namespace sparrow {
class DeviceRunner {};  // no CUDA backend in this build: never constructed
}  // namespace sparrow
#endif

namespace sparrow {

struct ModelExecutor::Rank {
  int index = 0;
  RankComms comms;
  RankContext ctx;
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<KVPool> kv;
  std::unique_ptr<Arena> ws;
  Buffer scratch_logits;  // ranks that are not their group's attention-TP rank 0
};

ModelExecutor::ModelExecutor(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype,
                             const ParallelOptions& p, int64_t kv_slots, int64_t max_step_tokens, Device device,
                             DeviceOptions gpu)
    : mesh_(Mesh::build(p.layout, c)), device_(device), kv_slots_(kv_slots) {
  // The one place that decides whether this engine can run a layout across nodes: CPU
  // ranks are threads of this process, and a GPU executor drives one rank, so ranks on
  // other nodes need NCCL GPU ranks (parallel/cuda/nccl_world.h) driven from here.
  SPARROW_REQUIRE(p.nnodes == 1,
                  "--nnodes {}: multi-node runs need the CUDA device backend with NCCL ranks, which the engine does not "
                  "drive yet (--device cuda runs one GPU rank, --device cpu every rank as a thread of one process); use "
                  "--nnodes 1",
                  p.nnodes);
  const int leaves = deterministic_leaves(c);
  if (p.deterministic)
    SPARROW_REQUIRE(mesh_.attn_tp <= leaves && mesh_.moe_tp <= leaves && leaves % mesh_.attn_tp == 0 && leaves % mesh_.moe_tp == 0,
                    "deterministic inference splits reductions into {} leaves for this model: attention TP {} and MoE TP {} must divide it",
                    leaves, mesh_.attn_tp, mesh_.moe_tp);
  world_ = std::make_unique<InProcessWorld>(mesh_.world);
  if (device == Device::kCUDA) {
#ifdef SPARROW_HAVE_CUDA
    SPARROW_REQUIRE(mesh_.world == 1, "--device cuda runs one rank for now ({}): multi-GPU layouts need the NCCL backend "
                    "in the layers; use --device cpu for CPU ranks", mesh_.describe());
    auto rank = std::make_unique<Rank>();
    rank->comms = RankComms::create(*world_, mesh_, 0);
    // One GPU: the leaf tree only matters across TP splits; the batch-invariant kernels
    // give deterministic mode its guarantee there (docs/numerics.md, "GPU").
    rank->ctx = rank->comms.context(mesh_, 0, p.deterministic, 1, p.a2a);
    gpu.kv_slots = kv_slots;
    gpu.max_step_tokens = max_step_tokens;
    gpu_ = std::make_unique<DeviceRunner>(c, source, dtype, kv_dtype, rank->ctx, gpu);
    kv_slots_ = gpu_->kv_slots();
    ranks_.push_back(std::move(rank));
    return;
#else
    throw_input_error("--device cuda: this build has no CUDA backend");
#endif
  }
  SPARROW_CHECK(kv_slots > 0, "a CPU executor needs its KV pool size");
  for (int r = 0; r < mesh_.world; ++r) {
    auto rank = std::make_unique<Rank>();
    rank->index = r;
    rank->comms = RankComms::create(*world_, mesh_, r);
    rank->ctx = rank->comms.context(mesh_, r, p.deterministic, leaves, p.a2a);
    rank->model = std::make_unique<CausalLM>(c, source, dtype, rank->ctx);
    rank->kv = std::make_unique<KVPool>(c.num_layers, kv_slots, rank->model->local_kv_heads(), c.head_dim, kv_dtype);
    // MoE layers may see every DP group's tokens.
    rank->ws = std::make_unique<Arena>(rank->model->workspace_bytes(max_step_tokens * mesh_.attn_dp));
    ranks_.push_back(std::move(rank));
  }
  if (mesh_.world > 1) {
    log(LogLevel::kInfo, "parallel: {}{}{}", mesh_.describe(), p.deterministic ? ", deterministic" : "",
        p.a2a == MoeA2ABackend::kAllToAll ? ", MoE all-to-all" : "");
    for (int r = 0; r < mesh_.world; ++r) threads_.emplace_back([this, r] { worker(r); });
  }
}

ModelExecutor::~ModelExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : threads_) t.join();
}

size_t ModelExecutor::kv_bytes_per_token() const {
#ifdef SPARROW_HAVE_CUDA
  if (gpu_) return gpu_->kv_bytes_per_token();
#endif
  size_t n = 0;
  for (int r = 0; r < mesh_.attn_tp; ++r) n += ranks_[size_t(r)]->kv->bytes_per_token();
  return n;
}

void ModelExecutor::run_rank(Rank& r) {
  const int d = mesh_.attn_dp_rank(r.index);
  const ForwardBatch& b = *batches_[size_t(d)];
  Tensor out = logits_[size_t(d)];
  if (mesh_.attn_tp_rank(r.index) != 0) {
    if (r.scratch_logits.tensor().numel() < out.numel()) r.scratch_logits = Buffer(DType::kF32, out.shape());
    out = Tensor(r.scratch_logits.data(), DType::kF32, out.shape());
  }
  r.model->forward(b, *r.kv, *tables_[size_t(d)], *r.ws, out);
}

void ModelExecutor::worker(int rank) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    try {
      run_rank(*ranks_[size_t(rank)]);
    } catch (const std::exception& e) {
      // Peers are inside collectives waiting for this rank: there is no way back.
      std::fprintf(stderr, "fatal: rank %d failed during a step: %s\n", rank, e.what());
      std::abort();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (--pending_ == 0) cv_done_.notify_all();
  }
}

void ModelExecutor::step(std::span<const ForwardBatch* const> batches, std::span<const ReqToTokenPool* const> tables,
                         std::span<const Tensor> logits, std::span<int32_t* const> chosen) {
  SPARROW_CHECK(int(batches.size()) == mesh_.attn_dp && tables.size() == batches.size() && logits.size() == batches.size(),
                "one batch, table and logits buffer per DP group");
  SPARROW_CHECK(chosen.empty() || chosen.size() == batches.size(), "one token buffer per DP group");
  const auto chosen_of = [&](size_t d) {
    return !chosen.empty() && !batches[d]->sampling.empty() ? chosen[d] : nullptr;
  };
#ifdef SPARROW_HAVE_CUDA
  if (gpu_) {
    gpu_->step(*batches[0], *tables[0], logits[0], chosen_of(0));
    return;
  }
#endif
  batches_ = batches;
  tables_ = tables;
  logits_ = logits;
  if (mesh_.world == 1) {
    run_rank(*ranks_[0]);
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    pending_ = mesh_.world;
    ++generation_;
    cv_start_.notify_all();
    cv_done_.wait(lock, [&] { return pending_ == 0; });
  }
  // On the CPU the logits are on the host already: the same choice, from them.
  for (size_t d = 0; d < batches.size(); ++d)
    if (int32_t* out = chosen_of(d)) ops::sample_rows(logits[d], batches[d]->sampling.data(), out);
}

Buffer ModelExecutor::logits_buffer(int64_t rows, int64_t vocab) const {
#ifdef SPARROW_HAVE_CUDA
  // Page-locked memory is taken from the host for good: only for the usual sizes (a step's
  // sequences); a step that wants every prompt token's logits gets pageable memory, as does
  // any step when the pinned allocation fails.
  constexpr size_t kMaxPinned = size_t(1) << 30;
  if (device_ == Device::kCUDA && size_t(rows * vocab) * 4 <= kMaxPinned) {
    try {
      return cuda::pinned_buffer(DType::kF32, {rows, vocab});
    } catch (const Error& e) {
      log(LogLevel::kWarn, "logits buffer: pinned allocation failed ({}); using pageable memory", e.what());
    }
  }
#endif
  return Buffer(DType::kF32, {rows, vocab});
}

}  // namespace sparrow
