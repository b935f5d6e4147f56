// ModelExecutor: runs the model on every rank of the mesh, one thread per rank (the
// in-process backend; a GPU rank will be a thread driving its device). Each rank owns its
// model shard, its KV memory and its workspace; the attention-TP ranks of a DP group run
// the same batch, and all ranks step together (a DP group with no work runs an idle batch,
// so collectives still match).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "sparrow/core/arena.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/model/model.h"
#include "sparrow/parallel/mesh.h"
#include "sparrow/parallel/rank_context.h"

namespace sparrow {

class ModelExecutor {
 public:
  // One model shard per rank from `source` (which must outlive the executor), KV pools of
  // `kv_slots` slots in `kv_dtype`, workspaces for `max_step_tokens` tokens per DP group.
  ModelExecutor(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype, const ParallelOptions& p,
                int64_t kv_slots, int64_t max_step_tokens);
  ~ModelExecutor();

  const Mesh& mesh() const { return mesh_; }
  int dp_size() const { return mesh_.attn_dp; }
  // Bytes the ranks' collectives have moved so far (InProcessWorld::bytes_moved).
  uint64_t comm_bytes() const { return world_->bytes_moved(); }
  // KV bytes per token slot of one DP group (all its ranks).
  size_t kv_bytes_per_token() const;

  // One step on every rank: DP group d runs batches[d] (an empty batch: idle) against its
  // req_to_token table tables[d]; logits[d] receives its rows (the group's attention-TP
  // rank 0 writes them).
  void step(std::span<const ForwardBatch* const> batches, std::span<const ReqToTokenPool* const> tables,
            std::span<const Tensor> logits);

 private:
  struct Rank;
  void run_rank(Rank& r);
  void worker(int rank);

  Mesh mesh_;
  std::unique_ptr<InProcessWorld> world_;
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
};

}  // namespace sparrow
