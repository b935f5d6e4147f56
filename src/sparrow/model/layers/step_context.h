// What a layer needs to run one forward step besides its weights: the batch, the paged KV
// memory, the step's workspace arena, and the LayerCommunicator of its rank.
#pragma once

#include "sparrow/core/arena.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/parallel/layer_communicator.h"

namespace sparrow {

struct StepContext {
  const ForwardBatch& batch;
  KVPool& kv;
  ops::AttentionBatch attention;  // geometry of `batch` against the req_to_token table
  Arena& workspace;
  DType act_dtype;
  LayerCommunicator& comm;
};

// Leaves of the deterministic tree that one rank of a `tp`-way split holds (1 when not
// deterministic).
inline int local_leaves(const RankContext& c, int tp) { return c.deterministic ? c.leaves / tp : 1; }

}  // namespace sparrow
