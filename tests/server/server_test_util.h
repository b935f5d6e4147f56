// In-process servers for the server tests: one per configuration, started once per test
// binary on a free port (the tiny text model loads in milliseconds), and helpers to call them
// with httplib::Client and to split SSE streams.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sparrow/server/server.h"

namespace sparrow::server::test {

using nlohmann::json;

inline const std::string kTextModel = std::string(SPARROW_TESTDATA_DIR) + "/models/text_tiny";
inline const std::string kIdsModel = std::string(SPARROW_TESTDATA_DIR) + "/models/qwen3_moe";

inline ServerOptions text_options() {
  ServerOptions o;
  o.model_path = kTextModel;
  o.port = 0;
  o.max_total_tokens = 16384;
  o.max_running_requests = 64;
  o.enable_metrics = true;
  o.log_interval = 0;
  o.dtype = "float32";
  o.device = "cpu";  // the CPU suite, also where a GPU is present (tests/gpu/ covers the GPU)
  o.shutdown_grace_s = 1;
  return o;
}

// A started server per named configuration, kept for the whole test binary.
inline Server& shared_server(const std::string& name, const std::function<ServerOptions()>& make) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Server>> servers;
  std::lock_guard<std::mutex> lock(mu);
  auto& s = servers[name];
  if (!s) {
    s = std::make_unique<Server>(make());
    s->start();
  }
  return *s;
}

inline Server& text_server() { return shared_server("text", text_options); }

inline std::unique_ptr<httplib::Client> client(Server& s) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", s.port());
  c->set_read_timeout(60, 0);
  return c;
}

struct Reply {
  int status = 0;
  std::string body;
  json j;  // parsed body (null if not JSON)
};

// Status, body and parsed JSON of a client result (status 0 when the request failed).
inline Reply to_reply(const httplib::Result& r) {
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  out.j = json::parse(r->body, nullptr, false);
  if (out.j.is_discarded()) out.j = nullptr;
  return out;
}

inline Reply post(Server& s, const std::string& path, const std::string& body, httplib::Headers headers = {}) {
  auto c = client(s);
  return to_reply(c->Post(path, headers, body, "application/json"));
}
inline Reply post(Server& s, const std::string& path, const json& body, httplib::Headers headers = {}) {
  return post(s, path, body.dump(), std::move(headers));
}
inline Reply get(Server& s, const std::string& path, httplib::Headers headers = {}) {
  auto c = client(s);
  return to_reply(c->Get(path, headers));
}

// SSE body -> the data payloads in order; `done` tells whether the last one was [DONE].
struct Sse {
  std::vector<json> events;
  bool done = false;
  bool well_formed = true;  // every event is exactly "data: <payload>\n\n"
};
inline Sse parse_sse(const std::string& body) {
  Sse s;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) {
      s.well_formed = false;
      break;
    }
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0 || ev.find('\n') != std::string::npos) {
      s.well_formed = false;
      continue;
    }
    const std::string payload = ev.substr(6);
    if (s.done) s.well_formed = false;  // nothing may follow [DONE]
    if (payload == "[DONE]") {
      s.done = true;
      continue;
    }
    json j = json::parse(payload, nullptr, false);
    if (j.is_discarded()) s.well_formed = false;
    else s.events.push_back(std::move(j));
  }
  return s;
}

// Checks an error reply: status, OpenAI-shaped body, and a message containing `needle`.
inline void expect_error(const Reply& r, int status, const std::string& needle) {
  EXPECT_EQ(r.status, status) << r.body;
  ASSERT_TRUE(r.j.is_object()) << r.body;
  ASSERT_TRUE(r.j.contains("error")) << r.body;
  const json& e = r.j["error"];
  EXPECT_TRUE(e["message"].is_string());
  EXPECT_TRUE(e.contains("type") && e.contains("param") && e.contains("code")) << r.body;
  EXPECT_NE(e["message"].get<std::string>().find(needle), std::string::npos) << "message: " << e["message"] << " lacks: " << needle;
}

// Waits (bounded) until the engine has nothing running or waiting.
inline bool wait_engine_idle(Server& s, double seconds = 10) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(seconds * 1000));
  while (std::chrono::steady_clock::now() < until) {
    const EngineStats st = s.context().engine->stats();
    if (st.running == 0 && st.waiting == 0 && st.kv_used == 0 && s.context().in_flight == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace sparrow::server::test
