#include "sparrow/engine/response_json.h"

namespace sparrow {
namespace {

using nlohmann::json;

struct Builder {
  const TokenTextFn& text;

  json triple(std::optional<float> lp, int32_t id) const {
    return json::array({lp ? json(*lp) : json(nullptr), id, text ? json(text(id)) : json(nullptr)});
  }
  json entries(const std::vector<LogprobEntry>& v) const {
    json a = json::array();
    for (const auto& e : v) a.push_back(triple(e.logprob, e.token_id));
    return a;
  }
  json top_list(const std::vector<TokenLogprob>& v) const {
    json a = json::array();
    for (const auto& e : v) a.push_back(triple(e.logprob, e.token_id));
    return a;
  }
  json lists(const std::vector<std::vector<TokenLogprob>>& v) const {
    json a = json::array();
    for (const auto& e : v) a.push_back(top_list(e));
    return a;
  }
};

}  // namespace

json finish_reason_json(const FinishReason& f) {
  switch (f.kind) {
    case FinishReason::Kind::kLength: return {{"type", "length"}, {"length", f.length}};
    case FinishReason::Kind::kStop:
      if (f.matched_str) return {{"type", "stop"}, {"matched", *f.matched_str}};
      return {{"type", "stop"}, {"matched", f.matched}};
  }
  return nullptr;
}

json generate_response_json(const GenerateResult& r, const TokenTextFn& token_text) {
  const Builder b{token_text};
  json meta = {
      {"id", r.rid},
      {"finish_reason", finish_reason_json(r.finish)},
      {"prompt_tokens", r.prompt_tokens},
      {"completion_tokens", int32_t(r.output_ids.size())},
      {"cached_tokens", r.cached_tokens},
      {"e2e_latency", r.e2e_latency_s},
  };
  if (r.has_logprobs) {
    meta["input_token_logprobs"] = b.entries(r.input_token_logprobs);
    meta["output_token_logprobs"] = b.entries(r.output_token_logprobs);
    if (r.has_top_logprobs) {
      json in = json::array();
      for (const auto& e : r.input_top_logprobs) in.push_back(e ? b.top_list(*e) : json(nullptr));
      meta["input_top_logprobs"] = in;
      meta["output_top_logprobs"] = b.lists(r.output_top_logprobs);
    }
    if (r.has_token_ids_logprobs) {
      json in = json::array();
      for (const auto& e : r.input_token_ids_logprobs) in.push_back(e.empty() ? json(nullptr) : b.top_list(e));
      meta["input_token_ids_logprobs"] = in;
      meta["output_token_ids_logprobs"] = b.lists(r.output_token_ids_logprobs);
    }
  }
  return {{"output_ids", r.output_ids}, {"meta_info", meta}};
}

}  // namespace sparrow
