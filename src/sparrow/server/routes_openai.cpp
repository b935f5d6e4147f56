// The OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions (both with
// n, stop, seed, logprobs, streaming with usage), /v1/tokenize and /v1/detokenize.
// Each (prompt, sample) becomes one engine request; choice index = prompt * n + sample.
#include <fmt/format.h>

#include "sparrow/core/log.h"
#include "sparrow/server/http_util.h"
#include "sparrow/server/request_parsing.h"
#include "sparrow/server/routes.h"
#include "sparrow/server/sse.h"

namespace sparrow::server {
namespace {

using ordered_json = nlohmann::ordered_json;

enum class Api : uint8_t { kCompletions, kChat };

// One HTTP call, parsed: engine requests plus what the response needs.
struct OpenAiCall {
  Api api = Api::kCompletions;
  std::vector<Request> reqs;
  std::vector<size_t> prompt_of;          // per request: its prompt index
  std::vector<std::string> prompt_texts;  // per prompt (for echo)
  std::vector<std::vector<int32_t>> prompt_ids;
  bool stream = false, include_usage = false, echo = false;
  bool logprobs = false;  // completions: logprobs >= 0; chat: logprobs true
  int32_t top_logprobs = 0;
  std::string id;
  int64_t created = 0;
};

std::string token_str(const ServerContext& ctx, int32_t id) {
  if (!ctx.tokenizer) return fmt::format("token_id:{}", id);
  return ctx.tokenizer->decode(std::span<const int32_t>(&id, 1), false);
}

json finish_reason(const OutputChunk& ch) {
  if (ch.error) return "abort";
  return ch.result.finish.kind == FinishReason::Kind::kLength ? "length" : "stop";
}

json matched_stop(const OutputChunk& ch) {
  if (ch.error || ch.result.finish.kind != FinishReason::Kind::kStop) return nullptr;
  if (ch.result.finish.matched_str) return *ch.result.finish.matched_str;
  return ch.result.finish.matched;
}

// Shared sampling fields of both APIs (OpenAI names, plus SGLang's extras).
void parse_common(const json& b, const ServerContext& ctx, Request& base, OpenAiCall& call, int32_t& n, bool& max_given) {
  json sp = json::object();
  for (const char* k : {"temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                        "repetition_penalty", "ignore_eos", "skip_special_tokens", "stop_token_ids", "regex",
                        "json_schema", "ebnf"})
    if (b.contains(k)) sp[k] = b[k];
  if (b.contains("stop")) sp["stop"] = b["stop"];
  if (b.contains("min_tokens")) sp["min_new_tokens"] = b["min_tokens"];
  if (b.contains("seed")) sp["sampling_seed"] = b["seed"];
  const char* max_key = b.contains("max_completion_tokens") && !b["max_completion_tokens"].is_null() ? "max_completion_tokens" : "max_tokens";
  if (b.contains(max_key)) sp["max_new_tokens"] = b[max_key];
  if (b.contains("n")) sp["n"] = b["n"];
  if (const auto rf = b.find("response_format"); rf != b.end() && rf->is_object() && rf->value("type", "text") != "text")
    throw FieldError("response_format", "response_format other than text (structured output) is not supported");
  if (const auto lb = b.find("logit_bias"); lb != b.end() && !lb->is_null() && !lb->empty())
    throw FieldError("logit_bias", "logit_bias is not supported");
  try {
    parse_sampling_params(sp, base.sampling, ctx.vocab_size(), max_given, "");
  } catch (const FieldError& e) {
    // Report OpenAI's field names.
    std::string p = e.param();
    if (p == "max_new_tokens") p = max_key;
    if (p == "sampling_seed") p = "seed";
    if (p == "min_new_tokens") p = "min_tokens";
    std::string msg = e.what();
    for (auto [from, to] : {std::pair<const char*, const char*>{"max_new_tokens", "max_tokens"}, {"sampling_seed", "seed"}, {"min_new_tokens", "min_tokens"}})
      if (auto pos = msg.find(from); pos != std::string::npos) msg.replace(pos, std::string(from).size(), to);
    throw FieldError(p, msg);
  }
  n = base.sampling.n;
  base.sampling.n = 1;
  call.stream = get_bool(b, "stream").value_or(false);
  if (const auto so = b.find("stream_options"); so != b.end() && !so->is_null()) {
    if (!so->is_object()) throw FieldError("stream_options", "stream_options must be an object");
    call.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  if (const auto bo = get_int(b, "best_of", 1, 64); bo && *bo != n) throw FieldError("best_of", "best_of other than n is not supported");
  if (auto m = get_string(b, "model")) (void)m;  // any model name is accepted (one model is served)
}

void expand(OpenAiCall& call, const ServerContext& ctx, const Request& base, int32_t n, bool max_given, int32_t default_max) {
  for (size_t p = 0; p < call.prompt_ids.size(); ++p) {
    if (call.prompt_ids[p].empty()) throw FieldError("prompt", "the prompt is empty");
    for (int32_t k = 0; k < n; ++k) {
      Request r = base;
      r.input_ids = call.prompt_ids[p];
      if (!max_given) r.sampling.max_new_tokens = default_max_new_tokens(ctx, r.input_ids.size(), default_max);
      if (base.sampling.sampling_seed) r.sampling.sampling_seed = *base.sampling.sampling_seed + uint64_t(k);
      r.rid = fmt::format("{}-{}", call.id, call.reqs.size());
      call.reqs.push_back(std::move(r));
      call.prompt_of.push_back(p);
    }
  }
}

OpenAiCall parse_completions(const json& b, const ServerContext& ctx) {
  note_unknown_fields(b, {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "logprobs", "echo",
                          "stream", "stream_options", "presence_penalty", "frequency_penalty", "user", "best_of",
                          "logit_bias", "suffix", "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos",
                          "skip_special_tokens", "stop_token_ids"},
                      "/v1/completions");
  OpenAiCall call;
  call.api = Api::kCompletions;
  call.id = "cmpl-" + random_id();
  call.created = unix_time();
  if (const auto s = get_string(b, "suffix"); s && !s->empty()) throw FieldError("suffix", "suffix is not supported");
  const auto pit = b.find("prompt");
  if (pit == b.end() || pit->is_null()) throw FieldError("prompt", "prompt is required");
  const json& prompt = *pit;
  const int64_t vocab = ctx.vocab_size();
  auto add_text = [&](const json& t, const std::string& name) {
    if (!t.is_string()) throw FieldError("prompt", "prompt must be a string, a list of strings, a list of token ids or a list of such lists");
    call.prompt_ids.push_back(encode_text(ctx, t.get<std::string>(), name));
    call.prompt_texts.push_back(t.get<std::string>());
  };
  auto add_ids = [&](const json& ids, const std::string& name) {
    call.prompt_ids.push_back(parse_ids(ids, name, vocab));
    call.prompt_texts.push_back(ctx.tokenizer ? ctx.tokenizer->decode(call.prompt_ids.back()) : std::string());
  };
  if (prompt.is_string()) {
    add_text(prompt, "prompt");
  } else if (prompt.is_array() && !prompt.empty()) {
    if (prompt[0].is_string()) {
      for (size_t i = 0; i < prompt.size(); ++i) add_text(prompt[i], fmt::format("prompt[{}]", i));
    } else if (prompt[0].is_array()) {
      for (size_t i = 0; i < prompt.size(); ++i) add_ids(prompt[i], fmt::format("prompt[{}]", i));
    } else {
      add_ids(prompt, "prompt");
    }
  } else {
    throw FieldError("prompt", "prompt must be a non-empty string, list of strings, list of token ids or list of such lists");
  }
  Request base;
  int32_t n = 1;
  bool max_given = false;
  parse_common(b, ctx, base, call, n, max_given);
  if (const auto lp = get_int(b, "logprobs", 0, 20)) {
    call.logprobs = true;
    call.top_logprobs = int32_t(*lp);
  }
  call.echo = get_bool(b, "echo").value_or(false);
  if (call.echo && !ctx.tokenizer) throw FieldError("echo", "echo needs a tokenizer");
  base.return_logprob = call.logprobs;
  base.top_logprobs_num = call.top_logprobs;
  if (call.logprobs && call.echo) base.logprob_start_len = 0;
  expand(call, ctx, base, n, max_given, 16);  // OpenAI's default max_tokens for completions
  return call;
}

// Content of a message: a string, null, or a list of {type: "text", text} parts.
ordered_json message_content(const ordered_json& c, size_t i) {
  if (c.is_null() || c.is_string()) return c;
  const std::string name = fmt::format("messages[{}].content", i);
  if (!c.is_array()) throw FieldError(name, name + " must be a string or a list of content parts");
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      throw FieldError(name, name + ": only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

OpenAiCall parse_chat(const json& b, const std::string& raw_body, const ServerContext& ctx) {
  note_unknown_fields(b, {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop",
                          "seed", "logprobs", "top_logprobs", "stream", "stream_options", "presence_penalty",
                          "frequency_penalty", "user", "tools", "tool_choice", "chat_template_kwargs", "top_k", "min_p",
                          "repetition_penalty", "min_tokens", "ignore_eos", "skip_special_tokens", "stop_token_ids",
                          "response_format", "logit_bias", "add_generation_prompt", "parallel_tool_calls"},
                      "/v1/chat/completions");
  OpenAiCall call;
  call.api = Api::kChat;
  call.id = "chatcmpl-" + random_id();
  call.created = unix_time();
  const Tokenizer& tok = ctx.require_tokenizer("/v1/chat/completions");
  // Key order matters to templates that print JSON (tools): re-read the body in order.
  const ordered_json ob = ordered_json::parse(raw_body);
  const auto mit = ob.find("messages");
  if (mit == ob.end() || !mit->is_array() || mit->empty()) throw FieldError("messages", "messages must be a non-empty list");
  ordered_json messages = ordered_json::array();
  for (size_t i = 0; i < mit->size(); ++i) {
    const ordered_json& m = (*mit)[i];
    if (!m.is_object()) throw FieldError("messages", fmt::format("messages[{}] must be an object", i));
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      throw FieldError("messages", fmt::format("messages[{}].role must be a string", i));
    ordered_json mm = m;
    mm["content"] = message_content(m.contains("content") ? m["content"] : ordered_json(nullptr), i);
    if (mm["content"].is_null()) mm["content"] = "";
    messages.push_back(std::move(mm));
  }
  ordered_json tools = nullptr;
  if (const auto t = ob.find("tools"); t != ob.end() && !t->is_null()) {
    if (!t->is_array()) throw FieldError("tools", "tools must be a list");
    if (!t->empty()) tools = *t;
  }
  ordered_json kwargs = nullptr;
  if (const auto k = ob.find("chat_template_kwargs"); k != ob.end() && !k->is_null()) {
    if (!k->is_object()) throw FieldError("chat_template_kwargs", "chat_template_kwargs must be an object");
    kwargs = *k;
  }
  const bool add_gen = get_bool(b, "add_generation_prompt").value_or(true);
  std::string rendered;
  try {
    rendered = tok.apply_chat_template(messages, tools, add_gen, kwargs);
  } catch (const InputError& e) {
    throw FieldError("messages", std::string("the chat template failed: ") + e.what());
  }
  call.prompt_ids.push_back(tok.encode(rendered));
  call.prompt_texts.push_back(rendered);
  Request base;
  int32_t n = 1;
  bool max_given = false;
  parse_common(b, ctx, base, call, n, max_given);
  call.logprobs = get_bool(b, "logprobs").value_or(false);
  call.top_logprobs = int32_t(get_int(b, "top_logprobs", 0, 20).value_or(0));
  if (call.top_logprobs > 0 && !call.logprobs) throw FieldError("top_logprobs", "top_logprobs needs logprobs: true");
  base.return_logprob = call.logprobs;
  base.top_logprobs_num = call.top_logprobs;
  expand(call, ctx, base, n, max_given, INT32_MAX);
  return call;
}

// ---------------------------------------------------------------------------- responses

// Completions logprobs {tokens, token_logprobs, top_logprobs, text_offset}, appended to `lp`.
void append_completion_logprobs(const ServerContext& ctx, json& lp, const std::vector<LogprobEntry>& entries,
                                const std::vector<std::vector<TokenLogprob>>* tops, size_t& offset, bool has_tops) {
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string s = token_str(ctx, entries[i].token_id);
    lp["tokens"].push_back(s);
    lp["token_logprobs"].push_back(entries[i].logprob ? json(*entries[i].logprob) : json(nullptr));
    if (has_tops) {
      if (tops && i < tops->size()) {
        json d = json::object();
        for (const TokenLogprob& t : (*tops)[i]) d[token_str(ctx, t.token_id)] = t.logprob;
        lp["top_logprobs"].push_back(d);
      } else {
        lp["top_logprobs"].push_back(nullptr);
      }
    }
    lp["text_offset"].push_back(offset);
    offset += s.size();
  }
}

json empty_completion_logprobs(bool has_tops) {
  json lp = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"text_offset", json::array()}};
  lp["top_logprobs"] = has_tops ? json::array() : json(nullptr);
  return lp;
}

json token_bytes(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}

// Chat logprobs content entries for `entries`.
json chat_logprobs(const ServerContext& ctx, const std::vector<LogprobEntry>& entries,
                   const std::vector<std::vector<TokenLogprob>>& tops, bool has_tops) {
  json content = json::array();
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string s = token_str(ctx, entries[i].token_id);
    json e = {{"token", s}, {"logprob", entries[i].logprob.value_or(0.f)}, {"bytes", token_bytes(s)}, {"top_logprobs", json::array()}};
    if (has_tops && i < tops.size())
      for (const TokenLogprob& t : tops[i]) {
        const std::string ts = token_str(ctx, t.token_id);
        e["top_logprobs"].push_back({{"token", ts}, {"logprob", t.logprob}, {"bytes", token_bytes(ts)}});
      }
    content.push_back(std::move(e));
  }
  return content;
}

json usage_json(const OpenAiCall& call, const std::vector<int64_t>& completion_tokens, const std::vector<int64_t>& cached) {
  int64_t prompt = 0, completion = 0, cached_total = 0;
  for (const auto& ids : call.prompt_ids) prompt += int64_t(ids.size());
  for (int64_t c : completion_tokens) completion += c;
  for (int64_t c : cached) cached_total += c;
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached_total}}}};
}

json full_response(const ServerContext& ctx, const OpenAiCall& call, const std::vector<OutputChunk>& outs) {
  json choices = json::array();
  std::vector<int64_t> completion, cached;
  for (size_t i = 0; i < outs.size(); ++i) {
    const OutputChunk& ch = outs[i];
    const GenerateResult& r = ch.result;
    completion.push_back(int64_t(r.output_ids.size()));
    cached.push_back(r.cached_tokens);
    const bool tops = call.top_logprobs > 0;
    json c = {{"index", i}, {"finish_reason", finish_reason(ch)}, {"matched_stop", matched_stop(ch)}};
    if (call.api == Api::kCompletions) {
      std::string text = call.echo ? call.prompt_texts[call.prompt_of[i]] + ch.text : ch.text;
      c["text"] = text;
      if (call.logprobs) {
        json lp = empty_completion_logprobs(tops);
        size_t offset = 0;
        if (call.echo) {
          std::vector<std::vector<TokenLogprob>> in_tops;
          for (const auto& t : r.input_top_logprobs) in_tops.push_back(t.value_or(std::vector<TokenLogprob>{}));
          append_completion_logprobs(ctx, lp, r.input_token_logprobs, &in_tops, offset, tops);
          if (tops && !lp["top_logprobs"].empty()) lp["top_logprobs"][0] = nullptr;
        }
        append_completion_logprobs(ctx, lp, r.output_token_logprobs, &r.output_top_logprobs, offset, tops);
        c["logprobs"] = lp;
      } else {
        c["logprobs"] = nullptr;
      }
    } else {
      c["message"] = {{"role", "assistant"}, {"content", ch.text}, {"reasoning_content", nullptr}, {"tool_calls", nullptr}};
      c["logprobs"] = call.logprobs ? json{{"content", chat_logprobs(ctx, r.output_token_logprobs, r.output_top_logprobs, tops)}}
                                    : json(nullptr);
    }
    choices.push_back(std::move(c));
  }
  return {{"id", call.id},
          {"object", call.api == Api::kChat ? "chat.completion" : "text_completion"},
          {"created", call.created},
          {"model", ctx.model_name},
          {"choices", choices},
          {"usage", usage_json(call, completion, cached)}};
}

void handle(ServerContext& ctx, Api api, const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req);
  auto call = std::make_shared<OpenAiCall>(api == Api::kChat ? parse_chat(body, req.body, ctx) : parse_completions(body, ctx));
  auto group = std::make_shared<RequestGroup>(ctx, std::move(call->reqs));
  if (!call->stream) {
    send_json(res, full_response(ctx, *call, group->wait_all()));
    return;
  }
  struct StreamState {
    std::vector<uint8_t> started;
    std::vector<int64_t> completion, cached;
    std::vector<size_t> offset;
  };
  auto st = std::make_shared<StreamState>();
  const size_t n = group->size();
  st->started.assign(n, 0);
  st->completion.assign(n, 0);
  st->cached.assign(n, 0);
  st->offset.assign(n, 0);
  const ServerContext* c = &ctx;
  const char* object = api == Api::kChat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [c, call, object](json choice) {
    return json{{"id", call->id}, {"object", object}, {"created", call->created}, {"model", c->model_name},
                {"choices", json::array({std::move(choice)})}};
  };
  stream_group(
      res, group,
      [c, call, st, chunk](GroupEvent& ev, std::string& out) {
        const OutputChunk& ch = ev.chunk;
        const size_t i = ev.index;
        const bool tops = call->top_logprobs > 0;
        st->completion[i] += int64_t(ch.new_ids.size());
        if (ch.finished) st->cached[i] = ch.result.cached_tokens;
        json choice = {{"index", i}, {"finish_reason", ch.finished ? finish_reason(ch) : json(nullptr)}};
        if (ch.finished) choice["matched_stop"] = matched_stop(ch);
        if (call->api == Api::kCompletions) {
          std::string text = ch.new_text;
          if (!st->started[i] && call->echo) text = call->prompt_texts[call->prompt_of[i]] + text;
          choice["text"] = text;
          if (call->logprobs) {
            json lp = empty_completion_logprobs(tops);
            append_completion_logprobs(*c, lp, ch.new_output_logprobs, &ch.new_output_top_logprobs, st->offset[i], tops);
            choice["logprobs"] = lp;
          } else {
            choice["logprobs"] = nullptr;
          }
          st->started[i] = 1;
          if (!ch.new_ids.empty() || ch.finished || !text.empty()) out += sse_event(chunk(choice));
        } else {
          if (!st->started[i]) {
            st->started[i] = 1;
            json first = {{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
            out += sse_event(chunk(first));
          }
          choice["delta"] = ch.new_text.empty() && ch.finished ? json::object() : json{{"content", ch.new_text}};
          choice["logprobs"] = call->logprobs ? json{{"content", chat_logprobs(*c, ch.new_output_logprobs, ch.new_output_top_logprobs, tops)}}
                                              : json(nullptr);
          out += sse_event(chunk(choice));
        }
      },
      [c, call, st, object](std::string& out) {
        if (call->include_usage)
          out += sse_event({{"id", call->id}, {"object", object}, {"created", call->created}, {"model", c->model_name},
                            {"choices", json::array()}, {"usage", usage_json(*call, st->completion, st->cached)}});
        out += kSseDone;
      });
}

}  // namespace

void register_openai_routes(httplib::Server& svr, ServerContext& ctx) {
  using httplib::Request;
  using httplib::Response;
  svr.Get("/v1/models", [&ctx](const Request&, Response& res) {
    guarded(res, [&] {
      send_json(res, {{"object", "list"},
                      {"data", json::array({{{"id", ctx.model_name},
                                             {"object", "model"},
                                             {"created", int64_t(ctx.start_time_s)},
                                             {"owned_by", "sparrow"},
                                             {"root", ctx.engine->model_path()},
                                             {"max_model_len", ctx.engine->context_length()}}})}});
    });
  });
  svr.Post("/v1/completions", [&ctx](const Request& req, Response& res) {
    guarded(res, [&] { handle(ctx, Api::kCompletions, req, res); });
  });
  svr.Post("/v1/chat/completions", [&ctx](const Request& req, Response& res) {
    guarded(res, [&] { handle(ctx, Api::kChat, req, res); });
  });
  svr.Post("/v1/tokenize", [&ctx](const Request& req, Response& res) {
    guarded(res, [&] {
      const json body = parse_body(req);
      const Tokenizer& tok = ctx.require_tokenizer("/v1/tokenize");
      const auto p = body.find("prompt");
      if (p == body.end() || !(p->is_string() || p->is_array())) throw FieldError("prompt", "prompt must be a string or a list of strings");
      auto one = [&](const json& t) {
        if (!t.is_string()) throw FieldError("prompt", "prompt must be a string or a list of strings");
        return tok.encode(t.get<std::string>());
      };
      json tokens, count;
      if (p->is_string()) {
        const auto ids = one(*p);
        tokens = ids;
        count = ids.size();
      } else {
        tokens = json::array();
        count = json::array();
        for (const json& t : *p) {
          const auto ids = one(t);
          tokens.push_back(ids);
          count.push_back(ids.size());
        }
      }
      send_json(res, {{"tokens", tokens}, {"count", count}, {"max_model_len", ctx.engine->context_length()}});
    });
  });
  svr.Post("/v1/detokenize", [&ctx](const Request& req, Response& res) {
    guarded(res, [&] {
      const json body = parse_body(req);
      const Tokenizer& tok = ctx.require_tokenizer("/v1/detokenize");
      const auto t = body.find("tokens");
      if (t == body.end()) throw FieldError("tokens", "tokens is required");
      const std::vector<int32_t> ids = parse_ids(*t, "tokens", ctx.vocab_size());
      send_json(res, {{"text", tok.decode(ids, get_bool(body, "skip_special_tokens").value_or(false))}});
    });
  });
}

}  // namespace sparrow::server
