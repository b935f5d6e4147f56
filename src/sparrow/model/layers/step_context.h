// What a layer needs to run one forward step besides its weights: the batch, the paged KV
// memory, and the step's workspace arena.
#pragma once

#include "sparrow/core/arena.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/kernels/ops.h"

namespace sparrow {

struct StepContext {
  const ForwardBatch& batch;
  KVPool& kv;
  ops::AttentionBatch attention;  // geometry of `batch` against the req_to_token table
  Arena& workspace;
  DType act_dtype;
};

}  // namespace sparrow
