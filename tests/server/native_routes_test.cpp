// SGLang native routes over real HTTP: /generate (text, ids, batch, n, logprobs, streaming),
// health, info, load, flush_cache, abort_request, update_weights_from_disk, metrics.
#include <set>
#include <thread>

#include "server_test_util.h"

namespace sparrow::server::test {
namespace {

json greedy_params(int max_new) { return {{"temperature", 0}, {"max_new_tokens", max_new}, {"ignore_eos", true}}; }

TEST(ServerNative, GenerateTextAndIds) {
  Server& s = text_server();
  Reply r = post(s, "/generate", json{{"text", "It is a truth universally acknowledged"}, {"sampling_params", greedy_params(6)}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.j["text"].is_string());
  ASSERT_EQ(r.j["output_ids"].size(), 6u);
  const json& m = r.j["meta_info"];
  EXPECT_EQ(m["completion_tokens"], 6);
  EXPECT_EQ(m["finish_reason"]["type"], "length");
  EXPECT_EQ(m["finish_reason"]["length"], 6);
  EXPECT_GT(m["prompt_tokens"].get<int>(), 0);
  for (const char* k : {"id", "cached_tokens", "e2e_latency"}) EXPECT_TRUE(m.contains(k)) << k;
  // The same prompt as ids gives the same tokens (greedy), and text == detokenized ids.
  std::vector<int32_t> ids = s.context().tokenizer->encode("It is a truth universally acknowledged");
  Reply r2 = post(s, "/generate", json{{"input_ids", ids}, {"sampling_params", greedy_params(6)}});
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(r2.j["output_ids"], r.j["output_ids"]);
  EXPECT_EQ(r2.j["text"], r.j["text"]);
  EXPECT_GT(r2.j["meta_info"]["cached_tokens"].get<int>(), 0);  // prefix cache hit
}

TEST(ServerNative, BatchAndN) {
  Server& s = text_server();
  Reply r = post(s, "/generate", json{{"text", {"Emma", "Mr. Darcy", "Elinor"}}, {"sampling_params", greedy_params(3)}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(r.j.is_array());
  ASSERT_EQ(r.j.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const json texts = {"Emma", "Mr. Darcy", "Elinor"};
    Reply one = post(s, "/generate", json{{"text", texts[i]}, {"sampling_params", greedy_params(3)}});
    EXPECT_EQ(one.j["output_ids"], r.j[i]["output_ids"]) << i;
  }
  // Per-input sampling params, and n: 2 inputs x n=3 -> 6 results; seeded samples differ by seed+i.
  json sp = {{"temperature", 1.0}, {"max_new_tokens", 5}, {"n", 3}, {"sampling_seed", 7}, {"ignore_eos", true}};
  Reply n = post(s, "/generate", json{{"input_ids", {{1, 2, 3}, {4, 5}}}, {"sampling_params", sp}});
  ASSERT_EQ(n.status, 200) << n.body;
  ASSERT_EQ(n.j.size(), 6u);
  Reply again = post(s, "/generate", json{{"input_ids", {{1, 2, 3}, {4, 5}}}, {"sampling_params", sp}});
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(n.j[i]["output_ids"], again.j[i]["output_ids"]) << "seeded sampling is reproducible";
  // Single input with n > 1 -> a list.
  Reply single = post(s, "/generate", json{{"input_ids", {1, 2, 3}}, {"sampling_params", sp}});
  ASSERT_TRUE(single.j.is_array());
  EXPECT_EQ(single.j.size(), 3u);
  EXPECT_EQ(single.j[0]["output_ids"], n.j[0]["output_ids"]);
}

TEST(ServerNative, LogprobShapes) {
  Server& s = text_server();
  json body = {{"input_ids", {5, 6, 7, 8, 9}}, {"sampling_params", greedy_params(4)}, {"return_logprob", true},
               {"logprob_start_len", 0}, {"top_logprobs_num", 3}, {"token_ids_logprob", {1, 2}},
               {"return_text_in_logprobs", true}};
  Reply r = post(s, "/generate", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json& m = r.j["meta_info"];
  ASSERT_EQ(m["input_token_logprobs"].size(), 5u);
  EXPECT_TRUE(m["input_token_logprobs"][0][0].is_null());  // the first prompt token has no logprob
  EXPECT_EQ(m["input_token_logprobs"][1][1], 6);
  ASSERT_EQ(m["output_token_logprobs"].size(), 4u);
  for (const json& t : m["output_token_logprobs"]) {
    ASSERT_EQ(t.size(), 3u);
    EXPECT_LE(t[0].get<double>(), 0.0);
    EXPECT_TRUE(t[2].is_string());  // return_text_in_logprobs
  }
  ASSERT_EQ(m["output_top_logprobs"].size(), 4u);
  for (const json& top : m["output_top_logprobs"]) EXPECT_EQ(top.size(), 3u);
  ASSERT_EQ(m["input_top_logprobs"].size(), 5u);
  EXPECT_TRUE(m["input_top_logprobs"][0].is_null());
  // Greedy: the chosen token is the top-1 alternative.
  EXPECT_EQ(m["output_top_logprobs"][0][0][1], m["output_token_logprobs"][0][1]);
  ASSERT_EQ(m["output_token_ids_logprobs"].size(), 4u);
  EXPECT_EQ(m["output_token_ids_logprobs"][0].size(), 2u);
  EXPECT_EQ(m["output_token_ids_logprobs"][0][1][1], 2);
  // Without return_text_in_logprobs the text slot is null.
  body.erase("return_text_in_logprobs");
  Reply r2 = post(s, "/generate", body);
  EXPECT_TRUE(r2.j["meta_info"]["output_token_logprobs"][0][2].is_null());
}

TEST(ServerNative, StreamingMatchesNonStreamed) {
  Server& s = text_server();
  json body = {{"text", "She was the youngest of the two daughters"}, {"sampling_params", greedy_params(12)}};
  Reply whole = post(s, "/generate", body);
  ASSERT_EQ(whole.status, 200);
  body["stream"] = true;
  Reply st = post(s, "/generate", body);
  ASSERT_EQ(st.status, 200);
  Sse sse = parse_sse(st.body);
  EXPECT_TRUE(sse.well_formed) << st.body;
  EXPECT_TRUE(sse.done);
  ASSERT_GE(sse.events.size(), 2u);
  // Chunks are cumulative; the last carries the full result.
  for (size_t i = 0; i + 1 < sse.events.size(); ++i) {
    EXPECT_TRUE(sse.events[i]["meta_info"]["finish_reason"].is_null());
    const std::string t = sse.events[i]["text"], next = sse.events[i + 1]["text"];
    EXPECT_EQ(next.rfind(t, 0), 0u) << "text is cumulative";
  }
  const json& last = sse.events.back();
  EXPECT_EQ(last["text"], whole.j["text"]);
  EXPECT_EQ(last["output_ids"], whole.j["output_ids"]);
  EXPECT_EQ(last["meta_info"]["finish_reason"]["type"], "length");
  // Batch streams tag chunks with their index.
  Reply batch = post(s, "/generate", json{{"input_ids", {{1, 2}, {3, 4}}}, {"stream", true}, {"sampling_params", greedy_params(3)}});
  Sse bs = parse_sse(batch.body);
  EXPECT_TRUE(bs.done && bs.well_formed);
  std::set<int> finished;
  for (const json& e : bs.events)
    if (!e["meta_info"]["finish_reason"].is_null()) finished.insert(e["index"].get<int>());
  EXPECT_EQ(finished, (std::set<int>{0, 1}));
}

TEST(ServerNative, StopStringsAndStopIds) {
  Server& s = text_server();
  Reply base = post(s, "/generate", json{{"text", "Emma Woodhouse"}, {"sampling_params", greedy_params(12)}});
  const std::vector<int32_t> out = base.j["output_ids"];
  ASSERT_GE(out.size(), 4u);
  // Stop at the third generated token's id.
  json sp = greedy_params(12);
  sp["stop_token_ids"] = {out[2]};
  Reply r = post(s, "/generate", json{{"text", "Emma Woodhouse"}, {"sampling_params", sp}});
  EXPECT_EQ(r.j["meta_info"]["finish_reason"]["type"], "stop");
  EXPECT_EQ(r.j["meta_info"]["finish_reason"]["matched"], out[2]);
  EXPECT_LE(r.j["output_ids"].size(), 3u);
  // A stop string taken from the generated text: the text is cut before its first occurrence.
  const std::string text = base.j["text"];
  std::string stop;
  for (size_t i = 1; i < out.size() && stop.empty(); ++i) {
    const std::string piece = s.context().tokenizer->decode(std::vector<int32_t>{out[i]});
    if (piece.size() >= 2 && piece.find("\xEF\xBF\xBD") == std::string::npos && text.find(piece) != std::string::npos) stop = piece;
  }
  if (!stop.empty()) {
    json sp2 = greedy_params(12);
    sp2["stop"] = {stop, "zzzz-never"};
    Reply r2 = post(s, "/generate", json{{"text", "Emma Woodhouse"}, {"sampling_params", sp2}});
    ASSERT_EQ(r2.status, 200) << r2.body;
    EXPECT_EQ(r2.j["text"], text.substr(0, text.find(stop)));
    EXPECT_EQ(r2.j["meta_info"]["finish_reason"]["type"], "stop");
    EXPECT_EQ(r2.j["meta_info"]["finish_reason"]["matched"], stop);
  }
}

TEST(ServerNative, InfoRoutes) {
  Server& s = text_server();
  EXPECT_EQ(get(s, "/health").status, 200);
  EXPECT_EQ(get(s, "/health_generate").status, 200);
  for (const char* p : {"/model_info", "/get_model_info"}) {
    Reply r = get(s, p);
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.j["model_path"], kTextModel);
    EXPECT_EQ(r.j["tokenizer_path"], kTextModel);
    EXPECT_EQ(r.j["is_generation"], true);
  }
  Reply info = get(s, "/server_info");
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.j["max_running_requests"], 64);
  EXPECT_EQ(info.j["context_length"], 1024);
  EXPECT_TRUE(info.j["internal_states"][0].contains("kv_used_tokens"));
  Reply load = get(s, "/get_load");
  ASSERT_EQ(load.status, 200);
  EXPECT_EQ(load.j[0]["dp_rank"], 0);
  EXPECT_TRUE(load.j[0].contains("num_reqs"));
}

TEST(ServerNative, FlushCache) {
  Server& s = text_server();
  ASSERT_EQ(post(s, "/generate", json{{"input_ids", {9, 9, 9, 9}}, {"sampling_params", greedy_params(2)}}).status, 200);
  ASSERT_TRUE(wait_engine_idle(s));
  Reply f = post(s, "/flush_cache", std::string());
  EXPECT_EQ(f.status, 200) << f.body;
  EXPECT_EQ(f.j["success"], true);
  ASSERT_TRUE(wait_engine_idle(s));
  Reply r = post(s, "/generate", json{{"input_ids", {9, 9, 9, 9}}, {"sampling_params", greedy_params(2)}});
  EXPECT_EQ(r.j["meta_info"]["cached_tokens"], 0);
}

TEST(ServerNative, AbortRequest) {
  Server& s = text_server();
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    post(s, "/abort_request", json{{"rid", "to-abort"}});
  });
  json sp = greedy_params(1000);
  Reply r = post(s, "/generate", json{{"input_ids", {1, 2, 3}}, {"rid", "to-abort"}, {"sampling_params", sp}});
  t.join();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["meta_info"]["finish_reason"]["type"], "abort");
  EXPECT_LT(r.j["output_ids"].size(), 1000u);
  EXPECT_TRUE(wait_engine_idle(s));
  expect_error(post(s, "/abort_request", json::object()), 400, "rid");
}

TEST(ServerNative, UpdateWeightsFromDisk) {
  Server& s = text_server();
  json body = {{"input_ids", {3, 1, 4, 1, 5}}, {"sampling_params", greedy_params(5)}};
  Reply before = post(s, "/generate", body);
  Reply ok = post(s, "/update_weights_from_disk", json{{"model_path", kTextModel}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.j["success"], true);
  EXPECT_EQ(post(s, "/generate", body).j["output_ids"], before.j["output_ids"]);
  Reply bad = post(s, "/update_weights_from_disk", json{{"model_path", "/nonexistent/model"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.j["success"], false);
  EXPECT_TRUE(bad.j["message"].is_string());
  Reply other = post(s, "/update_weights_from_disk", json{{"model_path", kIdsModel}});  // another architecture
  EXPECT_EQ(other.status, 400) << other.body;
  EXPECT_EQ(post(s, "/generate", body).j["output_ids"], before.j["output_ids"]);  // still serving the same weights
}

TEST(ServerNative, Metrics) {
  Server& s = text_server();
  ASSERT_EQ(post(s, "/generate", json{{"input_ids", {1, 2}}, {"sampling_params", greedy_params(3)}}).status, 200);
  Reply m = get(s, "/metrics");
  ASSERT_EQ(m.status, 200);
  for (const char* name : {"sparrow:num_requests_total", "sparrow:prompt_tokens_total", "sparrow:generation_tokens_total",
                           "sparrow:time_to_first_token_seconds_bucket", "sparrow:inter_token_latency_seconds_bucket",
                           "sparrow:e2e_request_latency_seconds_count", "sparrow:num_queue_reqs",
                           "sparrow:num_running_reqs", "sparrow:token_usage", "sparrow:cache_hit_rate",
                           "# TYPE sparrow:time_to_first_token_seconds histogram", "le=\"+Inf\""})
    EXPECT_NE(m.body.find(name), std::string::npos) << name;
  // Metrics off -> 404.
  Server& ids = shared_server("ids", [] {
    ServerOptions o = text_options();
    o.model_path = kIdsModel;
    o.skip_tokenizer_init = true;
    o.enable_metrics = false;
    return o;
  });
  EXPECT_EQ(get(ids, "/metrics").status, 404);
}

TEST(ServerNative, SkipTokenizerInit) {
  Server& s = shared_server("ids", [] {
    ServerOptions o = text_options();
    o.model_path = kIdsModel;
    o.skip_tokenizer_init = true;
    o.enable_metrics = false;
    return o;
  });
  Reply r = post(s, "/generate", json{{"input_ids", {1, 2, 3}}, {"sampling_params", greedy_params(4)}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.j.contains("text"));
  EXPECT_EQ(r.j["output_ids"].size(), 4u);
  expect_error(post(s, "/generate", json{{"text", "hello"}}), 400, "skip-tokenizer-init");
  expect_error(post(s, "/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}}), 400, "tokenizer");
  Reply c = post(s, "/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", 2}, {"temperature", 0}});
  EXPECT_EQ(c.status, 200) << c.body;
}

}  // namespace
}  // namespace sparrow::server::test
