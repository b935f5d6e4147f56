// OfflineEngine: runs a fixed set of requests to completion on one model: one extend batch
// (in chunks of at most max_prefill_tokens) for all prompts, then decode steps over all
// running sequences together, with greedy selection and SGLang-style logprobs. The serving
// scheduler (continuous batching, prefix cache) builds on the same model, KV pool and
// logprob code.
#pragma once

#include <memory>
#include <vector>

#include "sparrow/core/arena.h"
#include "sparrow/engine/generate_types.h"
#include "sparrow/engine/kv_pool.h"
#include "sparrow/model/model.h"

namespace sparrow {

struct OfflineEngineOptions {
  int64_t max_prefill_tokens = 8192;  // tokens per extend forward
  int64_t max_context = 0;            // 0: the model's max_position_embeddings
};

class OfflineEngine {
 public:
  OfflineEngine(const CausalLM& model, OfflineEngineOptions opts = {});

  // Validates every request first (InputError on bad ids, empty prompts, lengths beyond the
  // context), then runs them all. Results are in request order.
  std::vector<GenerateResult> generate(const std::vector<GenerateRequest>& requests);

 private:
  const CausalLM& model_;
  OfflineEngineOptions opts_;
};

}  // namespace sparrow
