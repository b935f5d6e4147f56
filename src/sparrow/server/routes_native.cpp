// SGLang's native API: /generate (single, batch, n, logprobs, streaming), health, model and
// server info, load, cache flush, abort, weight reload and Prometheus metrics.
#include <fmt/format.h>

#include "sparrow/core/log.h"
#include "sparrow/engine/response_json.h"
#include "sparrow/server/http_util.h"
#include "sparrow/server/request_parsing.h"
#include "sparrow/server/routes.h"
#include "sparrow/server/sse.h"

namespace sparrow::server {
namespace {

TokenTextFn token_text_fn(const ServerContext& ctx, bool enabled) {
  if (!enabled || !ctx.tokenizer) return {};
  const Tokenizer* tok = ctx.tokenizer.get();
  return [tok](int32_t id) { return tok->decode(std::span<const int32_t>(&id, 1), false); };
}

json abort_reason(const std::string& message) { return {{"type", "abort"}, {"message", message}}; }

// The response object of one finished request.
json final_json(const ServerContext& ctx, const OutputChunk& ch, const TokenTextFn& text_fn) {
  json j = generate_response_json(ch.result, text_fn);
  if (ctx.tokenizer) j["text"] = ch.text;
  if (ch.error) j["meta_info"]["finish_reason"] = abort_reason(*ch.error);
  return j;
}

// What a stream has sent so far for one request (chunks carry cumulative text / ids).
struct StreamAcc {
  GenerateResult partial;
  std::string text;
};

void handle_generate(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req);
  NativeGenerate g = parse_generate(body, ctx);
  const TokenTextFn text_fn = token_text_fn(ctx, g.return_text_in_logprobs);
  std::vector<StreamAcc> acc(g.reqs.size());
  for (size_t i = 0; i < g.reqs.size(); ++i) {
    GenerateResult& p = acc[i].partial;
    p.prompt_tokens = int32_t(g.reqs[i].input_ids.size());
    p.has_logprobs = g.reqs[i].return_logprob;
    p.has_top_logprobs = p.has_logprobs && g.reqs[i].top_logprobs_num > 0;
    p.has_token_ids_logprobs = p.has_logprobs && !g.reqs[i].token_ids_logprob.empty();
  }
  auto group = std::make_shared<RequestGroup>(ctx, std::move(g.reqs));
  for (size_t i = 0; i < acc.size(); ++i) acc[i].partial.rid = group->rids()[i];

  if (!g.stream) {
    std::vector<OutputChunk> outs = group->wait_all();
    json results = json::array();
    for (const OutputChunk& ch : outs) results.push_back(final_json(ctx, ch, text_fn));
    send_json(res, g.list_response ? results : results[0]);
    return;
  }
  const bool list = g.list_response;
  auto state = std::make_shared<std::vector<StreamAcc>>(std::move(acc));
  const ServerContext* c = &ctx;
  stream_group(
      res, group,
      [state, c, text_fn, list](GroupEvent& ev, std::string& out) {
        const OutputChunk& ch = ev.chunk;
        json j;
        if (ch.finished) {
          j = final_json(*c, ch, text_fn);
        } else {
          StreamAcc& a = (*state)[ev.index];
          GenerateResult& p = a.partial;
          p.output_ids.insert(p.output_ids.end(), ch.new_ids.begin(), ch.new_ids.end());
          p.output_token_logprobs.insert(p.output_token_logprobs.end(), ch.new_output_logprobs.begin(),
                                         ch.new_output_logprobs.end());
          p.output_top_logprobs.insert(p.output_top_logprobs.end(), ch.new_output_top_logprobs.begin(),
                                       ch.new_output_top_logprobs.end());
          p.output_token_ids_logprobs.insert(p.output_token_ids_logprobs.end(), ch.new_output_token_ids_logprobs.begin(),
                                             ch.new_output_token_ids_logprobs.end());
          a.text += ch.new_text;
          j = generate_response_json(p, text_fn);
          j["meta_info"]["finish_reason"] = nullptr;
          if (c->tokenizer) j["text"] = a.text;
        }
        if (list) j["index"] = ev.index;
        out += sse_event(j);
      },
      [](std::string& out) { out += kSseDone; });
}

json model_info(const ServerContext& ctx) {
  const ModelConfig& c = ctx.engine->config();
  return {{"model_path", ctx.engine->model_path()},
          {"tokenizer_path", ctx.tokenizer_path.empty() ? json(nullptr) : json(ctx.tokenizer_path)},
          {"is_generation", true},
          {"preferred_sampling_params", nullptr},
          {"weight_version", "default"},
          {"served_model_name", ctx.model_name},
          {"model_type", c.model_type},
          {"vocab_size", c.vocab_size},
          {"context_length", ctx.engine->context_length()}};
}

json stats_json(const EngineStats& s) {
  return {{"num_running_reqs", s.running},       {"num_waiting_reqs", s.waiting},
          {"kv_total_tokens", s.kv_total},       {"kv_used_tokens", s.kv_used},
          {"kv_cached_tokens", s.kv_cached},     {"prompt_tokens_total", s.prompt_tokens},
          {"generation_tokens_total", s.generation_tokens},
          {"requests_finished", s.requests_finished}, {"requests_aborted", s.requests_aborted},
          {"retractions", s.retractions},        {"last_gen_throughput", s.last_step_tokens_per_s}};
}

json server_info(const ServerContext& ctx) {
  const ServerOptions& o = ctx.opts;
  const EngineStats s = ctx.engine->stats();
  json j = {{"version", "0.1.0"},
            {"model_path", ctx.engine->model_path()},
            {"tokenizer_path", ctx.tokenizer_path},
            {"skip_tokenizer_init", o.skip_tokenizer_init},
            {"load_format", o.load_format},
            {"dtype", o.dtype},
            {"host", o.host},
            {"port", o.port},
            {"api_key", o.api_key.empty() ? json(nullptr) : json("<set>")},
            {"served_model_name", ctx.model_name},
            {"max_total_tokens", o.max_total_tokens},
            {"mem_fraction_static", o.mem_fraction_static},
            {"max_running_requests", o.max_running_requests},
            {"chunked_prefill_size", o.chunked_prefill_size},
            {"context_length", ctx.engine->context_length()},
            {"disable_radix_cache", o.disable_radix_cache},
            {"schedule_policy", o.schedule_policy},
            {"max_request_bytes", o.max_request_bytes},
            {"enable_metrics", o.enable_metrics},
            {"log_interval", o.log_interval},
            {"random_seed", o.random_seed ? json(*o.random_seed) : json(nullptr)},
            {"max_total_num_tokens", s.kv_total},
            {"uptime_s", now_s() - ctx.start_time_s},
            {"internal_states", json::array({stats_json(s)})}};
  return j;
}

}  // namespace

void register_native_routes(httplib::Server& svr, ServerContext& ctx) {
  using httplib::Request;
  using httplib::Response;
  svr.Post("/generate", [&ctx](const Request& req, Response& res) { guarded(res, [&] { handle_generate(ctx, req, res); }); });

  svr.Get("/health", [](const Request&, Response& res) { res.status = 200; });
  svr.Get("/health_generate", [&ctx](const Request&, Response& res) {
    guarded(res, [&] {
      sparrow::Request r;
      r.input_ids = {ctx.tokenizer && ctx.tokenizer->bos_token_id() ? *ctx.tokenizer->bos_token_id() : 0};
      r.sampling.max_new_tokens = 1;
      r.sampling.temperature = 0;
      r.sampling.ignore_eos = true;
      r.rid = "health-" + random_id(16);
      std::vector<sparrow::Request> v;
      v.push_back(std::move(r));
      RequestGroup group(ctx, std::move(v));
      const OutputChunk out = group.wait_all()[0];
      if (out.error || out.result.output_ids.size() != 1)
        throw HttpError(503, "health generation failed: " + out.error.value_or("no token"));
      res.status = 200;
    });
  });
  for (const char* path : {"/model_info", "/get_model_info"})
    svr.Get(path, [&ctx](const Request&, Response& res) { guarded(res, [&] { send_json(res, model_info(ctx)); }); });
  for (const char* path : {"/server_info", "/get_server_info"})
    svr.Get(path, [&ctx](const Request&, Response& res) { guarded(res, [&] { send_json(res, server_info(ctx)); }); });
  svr.Get("/get_load", [&ctx](const Request&, Response& res) {
    guarded(res, [&] {
      const EngineStats s = ctx.engine->stats();
      send_json(res, json::array({{{"dp_rank", 0},
                                   {"num_reqs", s.running + s.waiting},
                                   {"num_waiting_reqs", s.waiting},
                                   {"num_tokens", s.kv_used}}}));
    });
  });
  auto flush = [&ctx](const Request&, Response& res) {
    guarded(res, [&] {
      if (ctx.engine->flush_cache()) {
        send_json(res, {{"success", true}, {"message", "Cache flushed."}});
      } else {
        send_json(res, {{"success", false}, {"message", "Cache not flushed: there are running or waiting requests."}}, 400);
      }
    });
  };
  svr.Post("/flush_cache", flush);
  svr.Get("/flush_cache", flush);
  svr.Post("/abort_request", [&ctx](const Request& req, Response& res) {
    guarded(res, [&] {
      const json body = parse_body(req);
      const bool all = get_bool(body, "abort_all").value_or(false);
      const std::optional<std::string> rid = get_string(body, "rid");
      if (!all && (!rid || rid->empty())) throw FieldError("rid", "rid is required (or abort_all: true)");
      ctx.engine->abort(all ? std::string() : *rid);
      send_json(res, {{"success", true}});
    });
  });
  svr.Post("/update_weights_from_disk", [&ctx](const Request& req, Response& res) {
    guarded(res, [&] {
      const json body = parse_body(req);
      const std::optional<std::string> path = get_string(body, "model_path");
      if (!path || path->empty()) throw FieldError("model_path", "model_path is required");
      const std::string format = get_string(body, "load_format").value_or(ctx.opts.load_format);
      try {
        ctx.engine->update_weights_from_disk(*path, format);
      } catch (const InputError& e) {
        log(LogLevel::kWarn, "update_weights_from_disk({}) failed: {}", *path, e.what());
        send_json(res, {{"success", false}, {"message", std::string("Failed to update weights: ") + e.what()}}, 400);
        return;
      }
      log(LogLevel::kInfo, "weights reloaded from {}", *path);
      send_json(res, {{"success", true}, {"message", "Succeeded to update model weights."}, {"num_paused_requests", 0}});
    });
  });
  if (ctx.metrics) {
    svr.Get("/metrics", [&ctx](const Request&, Response& res) {
      guarded(res, [&] { res.set_content(ctx.metrics->render(ctx.engine->stats()), "text/plain; version=0.0.4"); });
    });
  }
}

}  // namespace sparrow::server
