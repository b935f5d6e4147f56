// The bad-input catalogue: every malformed request gets a 4xx with a clear message in the
// error shape, and the server keeps serving. Also auth (401), body size (413), 404.
#include "server_test_util.h"

namespace sparrow::server::test {
namespace {

void expect_still_serving(Server& s) {
  Reply ok = post(s, "/generate", json{{"input_ids", {1, 2, 3}}, {"sampling_params", {{"max_new_tokens", 2}, {"temperature", 0}}}});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

struct Case {
  const char* path;
  std::string body;
  const char* needle;
};

TEST(ServerBadInput, Catalogue) {
  Server& s = text_server();
  auto J = [](const json& j) { return j.dump(); };
  const std::vector<Case> cases = {
      {"/generate", "{\"text\": \"abc\"", "malformed JSON"},
      {"/generate", "[1, 2]", "must be a JSON object"},
      {"/generate", "", "malformed JSON"},
      {"/generate", J({{"sampling_params", {{"max_new_tokens", 2}}}}), "exactly one of text or input_ids"},
      {"/generate", J({{"text", "a"}, {"input_ids", {1}}}), "exactly one of text or input_ids"},
      {"/generate", J({{"text", 5}}), "text must be a string"},
      {"/generate", J({{"text", ""}}), "text is empty"},
      {"/generate", J({{"input_ids", json::array()}}), "input_ids is empty"},
      {"/generate", J({{"input_ids", {1, "x"}}}), "must be an integer token id"},
      {"/generate", J({{"input_ids", {1, 512}}}), "outside the vocabulary"},
      {"/generate", J({{"input_ids", {-1}}}), "outside the vocabulary"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"temperature", -0.5}}}}), "temperature"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"temperature", "hot"}}}}), "temperature must be a number"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"top_p", 0}}}}), "top_p"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"top_k", -5}}}}), "top_k"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"max_new_tokens", -1}}}}), "max_new_tokens"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"max_new_tokens", 2.5}}}}), "must be an integer"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"max_new_tokens", 5000}}}}), "context length"},
      {"/generate", J({{"input_ids", json(std::vector<int>(1100, 7))}}), "context length"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"n", 0}}}}), "n must be"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"stop", 3}}}}), "stop must be a string"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"stop", {""}}}}}), "empty"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"repetition_penalty", 0}}}}), "repetition_penalty"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"frequency_penalty", 9}}}}), "frequency_penalty"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"min_new_tokens", 9}, {"max_new_tokens", 2}}}}), "min_new_tokens"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", {{"regex", "a+"}}}}), "not supported"},
      {"/generate", J({{"input_ids", {1}}, {"sampling_params", 3}}), "sampling_params must be"},
      {"/generate", J({{"input_ids", {1}}, {"stream", "yes"}}), "stream must be true or false"},
      {"/generate", J({{"input_ids", {1, 2}}, {"return_logprob", true}, {"logprob_start_len", 5}}), "logprob_start_len"},
      {"/generate", J({{"input_ids", {1}}, {"return_logprob", true}, {"top_logprobs_num", -1}}), "top_logprobs_num"},
      {"/generate", J({{"input_ids", {{1}, {2}}}, {"rid", {"a"}}}), "rid"},
      // Invalid UTF-8 in a JSON string is rejected by the parser.
      {"/generate", std::string("{\"text\": \"a\xff\xfe b\"}"), "malformed JSON"},
      {"/generate", std::string("{\"text\": \"\\ud800\"}"), "malformed JSON"},
      {"/v1/completions", J({{"max_tokens", 3}}), "prompt is required"},
      {"/v1/completions", J({{"prompt", ""}}), "empty"},
      {"/v1/completions", J({{"prompt", {{"a"}}}}), "prompt"},
      {"/v1/completions", J({{"prompt", "a"}, {"max_tokens", -3}}), "max_tokens"},
      {"/v1/completions", J({{"prompt", "a"}, {"max_tokens", 100000}}), "context length"},
      {"/v1/completions", J({{"prompt", "a"}, {"temperature", -1}}), "temperature"},
      {"/v1/completions", J({{"prompt", "a"}, {"logprobs", 50}}), "logprobs"},
      {"/v1/completions", J({{"prompt", "a"}, {"n", 100}}), "n must be"},
      {"/v1/completions", J({{"prompt", "a"}, {"seed", "s"}}), "seed"},
      {"/v1/completions", J({{"prompt", "a"}, {"suffix", "z"}}), "suffix is not supported"},
      {"/v1/chat/completions", J({{"messages", json::array()}}), "messages must be a non-empty list"},
      {"/v1/chat/completions", J({{"messages", {{{"content", "hi"}}}}}), "role"},
      {"/v1/chat/completions", J({{"messages", {{{"role", "user"}, {"content", 5}}}}}), "content"},
      {"/v1/chat/completions", J({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}), "only text"},
      {"/v1/chat/completions", J({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 2}}), "top_logprobs needs logprobs"},
      {"/v1/chat/completions", J({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_tokens", 5000}}), "context length"},
      {"/v1/tokenize", J({{"prompt", 5}}), "prompt must be"},
      {"/abort_request", J({{"rid", 5}}), "rid must be a string"},
      {"/update_weights_from_disk", J(json::object()), "model_path is required"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.path) + " " + c.body.substr(0, 120));
    expect_error(post(s, c.path, c.body), 400, c.needle);
  }
  expect_still_serving(s);
  EXPECT_TRUE(wait_engine_idle(s));
}

TEST(ServerBadInput, NotFound) {
  Server& s = text_server();
  expect_error(get(s, "/no/such/route"), 404, "not found");
  expect_error(post(s, "/v1/embeddings", json::object()), 404, "not found");
  expect_still_serving(s);
}

TEST(ServerBadInput, AuthAndBodyLimit) {
  Server& s = shared_server("auth", [] {
    ServerOptions o = text_options();
    o.api_key = "sekrit";
    o.max_request_bytes = 4096;
    o.enable_metrics = false;
    return o;
  });
  const json body = {{"input_ids", {1, 2}}, {"sampling_params", {{"max_new_tokens", 1}}}};
  expect_error(post(s, "/generate", body), 401, "missing API key");
  expect_error(post(s, "/v1/completions", body, {{"Authorization", "Bearer wrong"}}), 401, "invalid API key");
  expect_error(get(s, "/v1/models"), 401, "API key");
  EXPECT_EQ(get(s, "/health").status, 200);  // health needs no key
  const httplib::Headers auth = {{"Authorization", "Bearer sekrit"}};
  EXPECT_EQ(post(s, "/generate", body, auth).status, 200);
  EXPECT_EQ(get(s, "/v1/models", auth).status, 200);
  // Over --max-request-bytes -> 413, then the server still works.
  const std::string big = json{{"text", std::string(8000, 'a')}}.dump();
  expect_error(post(s, "/generate", big, auth), 413, "too large");
  EXPECT_EQ(post(s, "/generate", body, auth).status, 200);
}

}  // namespace
}  // namespace sparrow::server::test
