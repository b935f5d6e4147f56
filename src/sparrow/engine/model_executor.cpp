#include "sparrow/engine/model_executor.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "sparrow/core/log.h"
#include "sparrow/kernels/ops.h"
#ifdef SPARROW_HAVE_CUDA
#include "sparrow/core/cuda/device.h"
#include "sparrow/engine/cuda/device_runner.h"
#ifdef SPARROW_HAVE_NCCL
#include "sparrow/parallel/cuda/nccl_world.h"
#include "sparrow/parallel/cuda/shared_device_world.h"
#endif
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
  std::unique_ptr<CausalLM> model;  // CPU ranks
  std::unique_ptr<KVPool> kv;
  std::unique_ptr<Arena> ws;
  Buffer scratch_logits;  // CPU ranks that are not their group's attention-TP rank 0
  std::unique_ptr<DeviceRunner> gpu;  // --device cuda
};

ModelExecutor::ModelExecutor(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype,
                             const ParallelOptions& p, int64_t kv_slots, int64_t max_step_tokens, Device device,
                             DeviceOptions gpu)
    : mesh_(Mesh::build(p.layout, c)), device_(device), kv_slots_(kv_slots) {
  // The one place that decides whether this engine can run a layout across nodes: ranks are
  // threads of this process (CPU ranks, or one thread per GPU over NCCL), and ranks on other
  // nodes would need the schedulers' batches shipped to them each step.
  SPARROW_REQUIRE(p.nnodes == 1,
                  "--nnodes {}: the engine drives the ranks of one process (a thread per CPU rank or per GPU); "
                  "multi-node serving is not wired yet; use --nnodes 1",
                  p.nnodes);
  const int leaves = deterministic_leaves(c);
  if (p.deterministic)
    SPARROW_REQUIRE(mesh_.attn_tp <= leaves && mesh_.moe_tp <= leaves && leaves % mesh_.attn_tp == 0 && leaves % mesh_.moe_tp == 0,
                    "deterministic inference splits reductions into {} leaves for this model: attention TP {} and MoE TP {} must divide it",
                    leaves, mesh_.attn_tp, mesh_.moe_tp);
  if (device == Device::kCUDA) {
#ifdef SPARROW_HAVE_CUDA
    gpu.kv_slots = kv_slots;
    gpu.max_step_tokens = max_step_tokens;
    if (mesh_.world == 1) {
      world_ = std::make_unique<InProcessWorld>(1);
      auto rank = std::make_unique<Rank>();
      rank->comms = RankComms::create(*world_, mesh_, 0);
      // Deterministic mode runs the leaf tree on one GPU too, so its bits are those of every
      // multi-GPU layout (docs/numerics.md, "GPU").
      rank->ctx = rank->comms.context(mesh_, 0, p.deterministic, leaves, p.a2a);
      rank->gpu = std::make_unique<DeviceRunner>(c, source, dtype, kv_dtype, rank->ctx, gpu);
      kv_slots_ = rank->gpu->kv_slots();
      ranks_.push_back(std::move(rank));
      return;
    }
    start_gpu_ranks(c, source, dtype, kv_dtype, p, gpu, leaves);
    return;
#else
    throw_input_error("--device cuda: this build has no CUDA backend");
#endif
  }
  world_ = std::make_unique<InProcessWorld>(mesh_.world);
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

void ModelExecutor::start_gpu_ranks(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype,
                                    const ParallelOptions& p, const DeviceOptions& gpu, int leaves) {
#if defined(SPARROW_HAVE_CUDA) && defined(SPARROW_HAVE_NCCL)
  DeviceOptions opts = gpu;
  int shared_device = -1;  // share_one_device: the GPU every rank runs on
  if (gpu.share_one_device) {
    SPARROW_CUDA_CHECK(cudaGetDevice(&shared_device));
    world_ = std::make_unique<SharedDeviceWorld>(mesh_.world);
    opts.cuda_graphs = false;  // its collectives wait on the host
    opts.mem_fraction_static /= mesh_.world;
    log(LogLevel::kInfo, "parallel: {} on one GPU (shared-device test backend)", mesh_.describe());
  } else {
    int gpus = 0;
    SPARROW_CUDA_CHECK(cudaGetDeviceCount(&gpus));
    SPARROW_REQUIRE(gpus >= mesh_.world, "{} needs {} GPUs (one per rank), this machine has {}", mesh_.describe(),
                    mesh_.world, gpus);
    NcclWorldOptions o;
    o.size = mesh_.world;
    // Deterministic mode: every reduction in rank order (the leaf tree's top); default: NCCL's own.
    o.exact_order = p.deterministic;
    world_ = std::make_unique<NcclWorld>(o);
    log(LogLevel::kInfo, "parallel: {} on {} GPUs over NCCL", mesh_.describe(), mesh_.world);
  }
  CommWorld* comm_world = world_.get();
  for (int r = 0; r < mesh_.world; ++r) {
    ranks_.push_back(std::make_unique<Rank>());
    ranks_.back()->index = r;
  }
  // NCCL set-up is collective: every rank builds its communicators, model shard, KV pool and
  // decode graphs (whose capture runs collectives) on its own thread, all at once; the
  // thread then serves the steps.
  std::vector<std::string> errors(size_t(mesh_.world));
  int started = 0;
  for (int r = 0; r < mesh_.world; ++r)
    threads_.emplace_back([this, r, comm_world, shared_device, leaves, &c, &source, dtype, kv_dtype, &p, &opts, &errors,
                           &started] {
      Rank& rank = *ranks_[size_t(r)];
      try {
        if (shared_device >= 0) SPARROW_CUDA_CHECK(cudaSetDevice(shared_device));
        rank.comms = RankComms::create(*comm_world, mesh_, r);  // NCCL: makes the rank's GPU current first
        rank.ctx = rank.comms.context(mesh_, r, p.deterministic, leaves, p.a2a);
        rank.gpu = std::make_unique<DeviceRunner>(c, source, dtype, kv_dtype, rank.ctx, opts);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
        rank.gpu.reset();  // device state is freed on its own thread
        rank.comms = RankComms{};
      }
      const bool ok = errors[size_t(r)].empty();  // (the vector is gone once all have started)
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++started;
        cv_done_.notify_all();
      }
      if (ok) worker(r);
    });
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_done_.wait(lock, [&] { return started == mesh_.world; });
  }
  std::string failed;
  for (int r = 0; r < mesh_.world; ++r)
    if (!errors[size_t(r)].empty()) failed += fmt::format("{}rank {}: {}", failed.empty() ? "" : "; ", r, errors[size_t(r)]);
  if (!failed.empty()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    throw_input_error("starting the GPU ranks: {}", failed);
  }
  kv_slots_ = ranks_[0]->gpu->kv_slots();
  for (const auto& r : ranks_) kv_slots_ = std::min(kv_slots_, r->gpu->kv_slots());  // slots valid on every rank
#else
  (void)c, (void)source, (void)dtype, (void)kv_dtype, (void)p, (void)gpu, (void)leaves;
  throw_input_error("--device cuda with {}: several GPU ranks need the NCCL backend, which this build lacks (docs/gpu.md, "
                    "\"NCCL\")", mesh_.describe());
#endif
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
  size_t n = 0;
  for (int r = 0; r < mesh_.attn_tp; ++r) {
    const Rank& rank = *ranks_[size_t(r)];
#ifdef SPARROW_HAVE_CUDA
    if (rank.gpu) {
      n += rank.gpu->kv_bytes_per_token();
      continue;
    }
#endif
    n += rank.kv->bytes_per_token();
  }
  return n;
}

void ModelExecutor::run_rank(Rank& r) {
  const int d = mesh_.attn_dp_rank(r.index);
  const ForwardBatch& b = *batches_[size_t(d)];
  Tensor out = logits_[size_t(d)];
#ifdef SPARROW_HAVE_CUDA
  if (r.gpu) {
    // The group's attention-TP rank 0 returns its logits (or sampled ids); the others'
    // are the same (whole lm_head on every GPU rank) and stay on their devices.
    const bool home = mesh_.attn_tp_rank(r.index) == 0;
    int32_t* ids = home && !chosen_.empty() && !b.sampling.empty() ? chosen_[size_t(d)] : nullptr;
    RowLogprobsOut* lp = ids && !logprobs_.empty() && !b.logprobs.empty() ? logprobs_[size_t(d)] : nullptr;
    r.gpu->step(b, *tables_[size_t(d)], home ? out : Tensor(), ids, lp);
    return;
  }
#endif
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
      if (stop_) break;
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
  // A GPU rank frees its device state on its own thread (its device is current here).
  ranks_[size_t(rank)]->gpu.reset();
  ranks_[size_t(rank)]->comms = RankComms{};
}

void ModelExecutor::step(std::span<const ForwardBatch* const> batches, std::span<const ReqToTokenPool* const> tables,
                         std::span<const Tensor> logits, std::span<int32_t* const> chosen,
                         std::span<RowLogprobsOut* const> logprobs) {
  SPARROW_CHECK(int(batches.size()) == mesh_.attn_dp && tables.size() == batches.size() && logits.size() == batches.size(),
                "one batch, table and logits buffer per DP group");
  SPARROW_CHECK(chosen.empty() || chosen.size() == batches.size(), "one token buffer per DP group");
  SPARROW_CHECK(logprobs.empty() || logprobs.size() == batches.size(), "one logprobs buffer per DP group");
  const auto chosen_of = [&](size_t d) {
    return !chosen.empty() && !batches[d]->sampling.empty() ? chosen[d] : nullptr;
  };
  batches_ = batches;
  tables_ = tables;
  logits_ = logits;
  chosen_ = chosen;
  logprobs_ = logprobs;
  if (mesh_.world == 1) {
    run_rank(*ranks_[0]);
  } else {
    std::unique_lock<std::mutex> lock(mu_);
    pending_ = mesh_.world;
    ++generation_;
    cv_start_.notify_all();
    cv_done_.wait(lock, [&] { return pending_ == 0; });
  }
  if (device_ == Device::kCUDA) return;  // the ranks chose on their devices (or from their logits)
  // On the CPU the logits are on the host already: the same choice, from them.
  for (size_t d = 0; d < batches.size(); ++d)
    if (int32_t* out = chosen_of(d)) {
      const ForwardBatch& b = *batches[d];
      const bool lp = !logprobs.empty() && !b.logprobs.empty();
      saved_.resize(b.logit_edits.size());
      ops::sample_edited_rows(logits[d], b.logit_edits.data(), int64_t(b.logit_edits.size()), saved_.data(),
                              b.sampling.data(), out, lp ? b.logprobs.data() : nullptr, lp ? logprobs[d] : nullptr);
    }
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
