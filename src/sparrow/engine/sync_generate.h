// Runs requests through an Engine and waits for all of them: the offline path used by
// `sparrow generate`, the benchmarks and the tests. Requests are submitted together, so
// the engine batches them exactly as it would concurrent HTTP requests.
#pragma once

#include <vector>

#include "sparrow/engine/engine.h"

namespace sparrow {

struct SyncOutput {
  GenerateResult result;
  std::string text;
  std::optional<std::string> error;
};

// InputError from submit() propagates (nothing else is submitted after it).
std::vector<SyncOutput> generate_sync(Engine& engine, std::vector<Request> requests);

}  // namespace sparrow
