// Builds the SGLang /generate response object for one result: output_ids, meta_info with
// prompt/completion/cached tokens, finish_reason, e2e_latency and the logprob triples
// [logprob, token_id, text-or-null].
#pragma once

#include <nlohmann/json.hpp>

#include "sparrow/engine/generate_types.h"

namespace sparrow {

nlohmann::json finish_reason_json(const FinishReason& f);
nlohmann::json generate_response_json(const GenerateResult& r);

}  // namespace sparrow
