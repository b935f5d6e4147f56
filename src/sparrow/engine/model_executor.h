// ModelExecutor: runs the model on every rank of the mesh: CPU ranks as threads (the
// in-process backend), or GPU ranks through a DeviceRunner each (--device cuda: one GPU
// on the calling thread, or one thread per GPU over NCCL). Each rank owns its model shard,
// its KV memory and its workspace; the attention-TP ranks of a DP group run the same
// batch, and all ranks step together (a DP group with no work runs an idle batch, so
// collectives still match).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "sparrow/core/arena.h"
#include "sparrow/engine/device_options.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/model/model.h"
#include "sparrow/parallel/mesh.h"
#include "sparrow/parallel/rank_context.h"

namespace sparrow {

class DeviceRunner;

class ModelExecutor {
 public:
  // One model shard per rank from `source` (which must outlive the executor), KV pools of
  // `kv_slots` slots in `kv_dtype`, workspaces for `max_step_tokens` tokens per DP group.
  // On a GPU (`device` kCUDA) the DeviceRunner sizes the KV pool itself from `gpu`
  // (kv_slots <= 0: what the memory plan leaves); kv_slots() says what it got.
  ModelExecutor(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype, const ParallelOptions& p,
                int64_t kv_slots, int64_t max_step_tokens, Device device = Device::kCPU, DeviceOptions gpu = {});
  ~ModelExecutor();

  const Mesh& mesh() const { return mesh_; }
  int dp_size() const { return mesh_.attn_dp; }
  // Bytes the ranks' collectives have moved so far (CommWorld::bytes_moved).
  uint64_t comm_bytes() const { return world_->bytes_moved(); }
  // KV bytes per token slot of one DP group (all its ranks).
  size_t kv_bytes_per_token() const;
  // KV slots of each DP group's pool.
  int64_t kv_slots() const { return kv_slots_; }
  Device device() const { return device_; }

  // One step on every rank: DP group d runs batches[d] (an empty batch: idle) against its
  // req_to_token table tables[d]; logits[d] receives its rows (the group's attention-TP
  // rank 0 writes them). For a batch with `sampling`, chosen[d] ([rows] host ints)
  // receives each row's ops::sample_edited_rows token (after the batch's logit_edits)
  // instead, and logits[d] may be left unwritten but for batch.host_rows (on a GPU it is,
  // and may be empty when there are none);
  // with `logprobs` too, logprobs[d] ([rows]) receives each row's ops::row_logprobs (on a
  // GPU computed on the device, a teacher-forced row's for its given token).
  void step(std::span<const ForwardBatch* const> batches, std::span<const ReqToTokenPool* const> tables,
            std::span<const Tensor> logits, std::span<int32_t* const> chosen = {},
            std::span<RowLogprobsOut* const> logprobs = {});
  // A host buffer of f32 [rows, V] for step logits: pinned on a GPU (up to 1 GiB), so the
  // copies into it are DMA at full speed rather than staged through pageable memory.
  Buffer logits_buffer(int64_t rows, int64_t vocab) const;

 private:
  struct Rank;
  void run_rank(Rank& r);
  void worker(int rank);
  // Several GPUs: an NCCL world and one thread per rank, each building its DeviceRunner.
  void start_gpu_ranks(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype,
                       const ParallelOptions& p, const DeviceOptions& gpu, int leaves);

  Mesh mesh_;
  Device device_ = Device::kCPU;
  int64_t kv_slots_ = 0;
  std::unique_ptr<CommWorld> world_;  // InProcessWorld, or NcclWorld for several GPUs
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::vector<std::thread> threads_;
  // Step hand-off to the rank threads.
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::span<const ForwardBatch* const> batches_;
  std::span<const ReqToTokenPool* const> tables_;
  std::span<const Tensor> logits_;
  std::span<int32_t* const> chosen_;
  std::span<RowLogprobsOut* const> logprobs_;
  std::vector<float> saved_;  // step()'s scratch: the edited logits' originals (CPU ranks)
};

}  // namespace sparrow
