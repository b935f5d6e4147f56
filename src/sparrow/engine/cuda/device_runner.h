// DeviceRunner: one model rank on one GPU. Owns the single device allocation (weights, KV
// pool, step workspace: cuda::DeviceArena, sized by --mem-fraction-static), a stream, the
// pinned staging of each step's batch arrays, and the CUDA graphs of decode.
//
// A step: the ForwardBatch's arrays and the rows of the req_to_token table it reads are
// packed into pinned memory and uploaded in two copies; the model runs on the device; the
// logits rows come back to the host buffer the engine gave. Decode batches of up to
// --cuda-graph-max-bs sequences replay a graph captured for the next bucket size, padded
// with dummy sequences that write their K/V into one reserved slot (never handed to the
// scheduler) and whose logits are dropped.
#pragma once

#include <cstdint>
#include <memory>

#include "sparrow/engine/device_options.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/model/model.h"
#include "sparrow/parallel/rank_context.h"

namespace sparrow {

class DeviceRunner {
 public:
  DeviceRunner(const ModelConfig& c, const WeightSource& source, DType dtype, DType kv_dtype, const RankContext& rank,
               const DeviceOptions& opts);
  ~DeviceRunner();

  // KV slots the scheduler may hand out.
  int64_t kv_slots() const;
  size_t kv_bytes_per_token() const;
  // Runs `batch` (rows of `table` give its KV slots); logits: host f32 [rows, V], or an
  // empty Tensor for a rank whose attention-TP peer returns them. With batch.sampling,
  // chosen [rows] (host) gets each row's ops::sample_edited_rows token (after
  // batch.logit_edits) instead, and `logits` gets only batch.host_rows (it may be empty
  // when there are none): the step
  // uploads the edits, samples on the device (an eager step each lm_head chunk as it is
  // computed) and copies back only the ids. With batch.logprobs too, logprobs [rows] (host)
  // gets each row's ops::row_logprobs, computed on the device next to the choice (a
  // teacher-forced row's: its given token's, the prompt's input logprobs). Returns when the
  // step is done.
  // One of several ranks (NCCL): every rank calls step() for every step, with its DP
  // group's batch (empty: idle, it still joins the collectives).
  void step(const ForwardBatch& batch, const ReqToTokenPool& table, const Tensor& logits, int32_t* chosen = nullptr,
            RowLogprobsOut* logprobs = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparrow
