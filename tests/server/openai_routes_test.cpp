// OpenAI-compatible routes over real HTTP: models, completions, chat completions (n, stop,
// seed, logprobs, streaming with usage), tokenize / detokenize.
#include "server_test_util.h"

namespace sparrow::server::test {
namespace {

json chat_body(int max_tokens) {
  return {{"model", "x"}, {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Who is Emma?"}}}},
          {"max_tokens", max_tokens}, {"temperature", 0}};
}

TEST(ServerOpenAI, Models) {
  Server& s = text_server();
  Reply r = get(s, "/v1/models");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.j["object"], "list");
  EXPECT_EQ(r.j["data"][0]["id"], kTextModel);
  EXPECT_EQ(r.j["data"][0]["object"], "model");
}

TEST(ServerOpenAI, Completions) {
  Server& s = text_server();
  Reply r = post(s, "/v1/completions", json{{"prompt", "It is a truth"}, {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["object"], "text_completion");
  EXPECT_EQ(r.j["choices"].size(), 1u);
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(r.j["usage"]["total_tokens"], r.j["usage"]["prompt_tokens"].get<int>() + 5);
  // Same as /generate with greedy.
  Reply g = post(s, "/generate", json{{"text", "It is a truth"}, {"sampling_params", {{"max_new_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}}}});
  EXPECT_EQ(r.j["choices"][0]["text"], g.j["text"]);
  // Two prompts x n=2, seeded; echo; logprobs.
  json body = {{"prompt", {"Emma", "Anne"}}, {"max_tokens", 4}, {"n", 2}, {"seed", 11}, {"logprobs", 2}, {"echo", true}, {"ignore_eos", true}};
  Reply m = post(s, "/v1/completions", body);
  ASSERT_EQ(m.status, 200) << m.body;
  ASSERT_EQ(m.j["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const json& c = m.j["choices"][i];
    EXPECT_EQ(c["index"], i);
    const std::string text = c["text"];
    EXPECT_EQ(text.rfind(i < 2 ? "Emma" : "Anne", 0), 0u) << "echo";
    const json& lp = c["logprobs"];
    EXPECT_EQ(lp["tokens"].size(), lp["token_logprobs"].size());
    EXPECT_EQ(lp["tokens"].size(), lp["top_logprobs"].size());
    EXPECT_EQ(lp["tokens"].size(), lp["text_offset"].size());
    EXPECT_TRUE(lp["token_logprobs"][0].is_null());  // echoed first prompt token
  }
  EXPECT_EQ(post(s, "/v1/completions", body).j["choices"], m.j["choices"]) << "seeded";
  // Token-id prompts.
  Reply ids = post(s, "/v1/completions", json{{"prompt", {{1, 2, 3}, {4, 5}}}, {"max_tokens", 2}});
  EXPECT_EQ(ids.status, 200);
  EXPECT_EQ(ids.j["choices"].size(), 2u);
}

TEST(ServerOpenAI, CompletionsStreamMatches) {
  Server& s = text_server();
  json body = {{"prompt", "Sense and"}, {"max_tokens", 10}, {"temperature", 0}, {"ignore_eos", true}};
  Reply whole = post(s, "/v1/completions", body);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  Reply st = post(s, "/v1/completions", body);
  Sse sse = parse_sse(st.body);
  EXPECT_TRUE(sse.well_formed && sse.done) << st.body;
  std::string text;
  json finish;
  for (const json& e : sse.events) {
    if (e["choices"].empty()) {
      EXPECT_EQ(e["usage"]["completion_tokens"], 10);
      continue;
    }
    text += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, whole.j["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(finish, "length");
  EXPECT_TRUE(sse.events.back()["choices"].empty()) << "usage chunk last";
}

TEST(ServerOpenAI, ChatCompletions) {
  Server& s = text_server();
  Reply r = post(s, "/v1/chat/completions", chat_body(6));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["object"], "chat.completion");
  const json& c = r.j["choices"][0];
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_TRUE(c["message"]["content"].is_string());
  // The prompt is the ChatML rendering.
  const Tokenizer& tok = *s.context().tokenizer;
  const std::string rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho is Emma?<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(r.j["usage"]["prompt_tokens"], tok.encode(rendered).size());
  Reply g = post(s, "/generate", json{{"text", rendered}, {"sampling_params", {{"max_new_tokens", 6}, {"temperature", 0}}}});
  EXPECT_EQ(c["message"]["content"], g.j["text"]);
  // Content parts, logprobs with top_logprobs, n.
  json body = chat_body(4);
  body["messages"] = {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Who is "}}, {{"type", "text"}, {"text", "Emma?"}}}}}};
  body["logprobs"] = true;
  body["top_logprobs"] = 3;
  body["n"] = 2;
  body["ignore_eos"] = true;
  Reply l = post(s, "/v1/chat/completions", body);
  ASSERT_EQ(l.status, 200) << l.body;
  ASSERT_EQ(l.j["choices"].size(), 2u);
  const json& content = l.j["choices"][1]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  for (const json& e : content) {
    EXPECT_TRUE(e["token"].is_string());
    EXPECT_TRUE(e["bytes"].is_array());
    EXPECT_EQ(e["top_logprobs"].size(), 3u);
  }
  // Tools are passed to the template (ChatML ignores them, but they must be accepted).
  json tools = chat_body(2);
  tools["tools"] = {{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", json::object()}}}}};
  EXPECT_EQ(post(s, "/v1/chat/completions", tools).status, 200);
}

TEST(ServerOpenAI, ChatStream) {
  Server& s = text_server();
  json body = chat_body(8);
  body["ignore_eos"] = true;
  Reply whole = post(s, "/v1/chat/completions", body);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  Reply st = post(s, "/v1/chat/completions", body);
  Sse sse = parse_sse(st.body);
  ASSERT_TRUE(sse.well_formed && sse.done) << st.body;
  ASSERT_GE(sse.events.size(), 3u);
  EXPECT_EQ(sse.events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(sse.events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  std::string finish;
  for (const json& e : sse.events) {
    if (e["choices"].empty()) {
      EXPECT_EQ(e["usage"]["completion_tokens"], 8);
      continue;
    }
    const json& d = e["choices"][0]["delta"];
    if (d.contains("content")) text += d["content"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, whole.j["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_EQ(finish, "length");
}

TEST(ServerOpenAI, TokenizeDetokenize) {
  Server& s = text_server();
  Reply t = post(s, "/v1/tokenize", json{{"prompt", "Pride and Prejudice"}});
  ASSERT_EQ(t.status, 200) << t.body;
  EXPECT_EQ(t.j["count"], t.j["tokens"].size());
  EXPECT_EQ(t.j["max_model_len"], 1024);
  Reply d = post(s, "/v1/detokenize", json{{"tokens", t.j["tokens"]}});
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.j["text"], "Pride and Prejudice");
  Reply many = post(s, "/v1/tokenize", json{{"prompt", {"a", "bb"}}});
  EXPECT_EQ(many.j["tokens"].size(), 2u);
  expect_error(post(s, "/v1/detokenize", json{{"tokens", {1, 100000}}}), 400, "outside the vocabulary");
}

}  // namespace
}  // namespace sparrow::server::test
