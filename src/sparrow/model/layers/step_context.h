// What a layer needs to run one forward step besides its weights: the batch, the paged KV
// memory, the step's workspace arena, and the LayerCommunicator of its rank.
#pragma once

#include "sparrow/core/arena.h"
#include "sparrow/engine/forward_batch.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/parallel/layer_communicator.h"

namespace sparrow {

// The batch's per-token arrays and attention geometry where the kernels read them: the
// ForwardBatch's own vectors and the host req_to_token table on the CPU, their uploaded
// copies on a GPU (then every pointer is a device pointer).
struct BatchArrays {
  const int32_t* ids = nullptr;         // [T]
  const int32_t* positions = nullptr;   // [T]
  const int32_t* cache_loc = nullptr;   // [T] KV slot of each token
  const int32_t* logit_rows = nullptr;  // [R]
  ops::AttentionBatch attention;        // geometry against the req_to_token table

  // The host arrays of `batch` against `req_to_token` (the CPU path).
  static BatchArrays host(const ForwardBatch& batch, const int32_t* req_to_token, int64_t max_context) {
    BatchArrays a;
    a.ids = batch.input_ids.data();
    a.positions = batch.positions.data();
    a.cache_loc = batch.out_cache_loc.data();
    a.logit_rows = batch.logit_rows.data();
    a.attention.batch = batch.batch_size();
    a.attention.req_slots = batch.req_slots.data();
    a.attention.seq_lens = batch.seq_lens.data();
    a.attention.extend_lens = batch.extend_lens.data();
    a.attention.q_offsets = batch.token_offsets.data();
    a.attention.req_to_token = req_to_token;
    a.attention.max_context = max_context;
    return a;
  }
};

struct StepContext {
  const ForwardBatch& batch;  // host copy (sizes, host-side decisions)
  KVPool& kv;
  BatchArrays arrays;
  Arena& workspace;
  DType act_dtype;
  LayerCommunicator& comm;
};

// Leaves of the deterministic tree that one rank of a `tp`-way split holds (1 when not
// deterministic).
inline int local_leaves(const RankContext& c, int tp) { return c.deterministic ? c.leaves / tp : 1; }

}  // namespace sparrow
