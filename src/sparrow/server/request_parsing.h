// Typed access to request JSON: every getter checks the type and range of one field and
// throws FieldError (HTTP 400) naming it, so any malformed request fails cleanly. Also the
// SGLang sampling_params object and the native /generate request.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "sparrow/engine/request.h"
#include "sparrow/server/server_context.h"

namespace sparrow::server {

using nlohmann::json;

// Absent or null -> nullopt.
std::optional<double> get_number(const json& o, const std::string& key);
std::optional<int64_t> get_int(const json& o, const std::string& key, int64_t lo = INT32_MIN, int64_t hi = INT32_MAX);
std::optional<bool> get_bool(const json& o, const std::string& key);
std::optional<std::string> get_string(const json& o, const std::string& key);

// Token ids: an array of integers, each in [0, vocab).
std::vector<int32_t> parse_ids(const json& v, const std::string& field, int64_t vocab);
// `stop`: a string or an array of strings.
std::vector<std::string> parse_stop(const json& v, const std::string& field);

// Reads SGLang's sampling_params fields present in `sp` into `out` (absent fields keep their
// value). Rejects constrained decoding (regex, json_schema, ebnf) as unsupported. Sets
// `max_new_tokens_given`.
void parse_sampling_params(const json& sp, SamplingParams& out, int64_t vocab, bool& max_new_tokens_given,
                           const std::string& prefix = "sampling_params.");

// Default max_new_tokens when the client gave none: `preferred`, clamped so that prompt +
// output fits the context.
int32_t default_max_new_tokens(const ServerContext& ctx, size_t prompt_len, int32_t preferred);

// Text -> ids with the server's tokenizer (HttpError 400 without one, or for empty text).
std::vector<int32_t> encode_text(const ServerContext& ctx, const std::string& text, const std::string& field);

// Logs (at debug) fields of `body` not in `known`, like SGLang ignoring extra fields.
void note_unknown_fields(const json& body, std::initializer_list<const char*> known, const char* route);

// POST /generate, after parsing: one engine Request per (input, sample).
struct NativeGenerate {
  std::vector<Request> reqs;
  bool list_response = false;  // batch input or n > 1: the response is a list
  bool stream = false;
  bool return_text_in_logprobs = false;
};
NativeGenerate parse_generate(const json& body, const ServerContext& ctx);

}  // namespace sparrow::server
