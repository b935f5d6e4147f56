// Builds the SGLang /generate response object for one result: output_ids, meta_info with
// prompt/completion/cached tokens, finish_reason, e2e_latency and the logprob triples
// [logprob, token_id, text-or-null]. The HTTP server and `sparrow generate` share it.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "sparrow/engine/generate_types.h"

namespace sparrow {

// Text of one token for the third element of logprob triples (return_text_in_logprobs);
// empty function: null.
using TokenTextFn = std::function<std::string(int32_t)>;

nlohmann::json finish_reason_json(const FinishReason& f);
nlohmann::json generate_response_json(const GenerateResult& r, const TokenTextFn& token_text = {});

}  // namespace sparrow
