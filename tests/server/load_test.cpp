// Many concurrent streaming clients for a few seconds, some disconnecting mid-stream: every
// request ends cleanly (complete stream with [DONE], or a cancelled one), and afterwards the
// engine is idle with no KV held by requests.
#include <atomic>
#include <thread>

#include "server_test_util.h"

namespace sparrow::server::test {
namespace {

TEST(ServerLoad, ConcurrentStreamingClientsWithDisconnects) {
  Server& s = text_server();
  constexpr int kClients = 48;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::atomic<int> complete{0}, cancelled{0}, failed{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      int iter = 0;
      while (std::chrono::steady_clock::now() < until) {
        const bool disconnect = (c + iter) % 4 == 0;
        ++iter;
        httplib::Client cli("127.0.0.1", s.port());
        cli.set_read_timeout(30, 0);
        json body = {{"input_ids", {1 + c % 7, 2, 3 + iter % 5, 4}},
                     {"stream", true},
                     {"sampling_params", {{"max_new_tokens", disconnect ? 400 : 24}, {"temperature", 0.8}, {"ignore_eos", true}}}};
        const bool openai = c % 3 == 1;
        if (openai) body = {{"prompt", "Emma"}, {"stream", true}, {"max_tokens", disconnect ? 400 : 24}, {"ignore_eos", true}};
        httplib::Request req;
        req.method = "POST";
        req.path = openai ? "/v1/completions" : "/generate";
        req.body = body.dump();
        req.set_header("Content-Type", "application/json");
        std::string received;
        int chunks = 0;
        req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
          received.append(data, len);
          ++chunks;
          return !(disconnect && chunks >= 2);  // false: the client hangs up mid-stream
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        const auto t0 = std::chrono::steady_clock::now();
        const bool ok = cli.send(req, res, err);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (disconnect) {
          ++cancelled;
          continue;
        }
        const Sse sse = parse_sse(received);
        if (ok && res.status == 200 && sse.done && sse.well_formed) ++complete;
        else {
          ++failed;
          std::printf("failed after %.3fs (%s): ok=%d err=%d status=%d done=%d well_formed=%d received=%zu bytes: %.200s\n",
                      dt, req.path.c_str(), int(ok), int(err), res.status, int(sse.done), int(sse.well_formed),
                      received.size(), received.c_str());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(complete.load(), kClients);
  EXPECT_GT(cancelled.load(), 0);
  // Every request finished or was aborted; no KV is held by requests.
  EXPECT_TRUE(wait_engine_idle(s, 20));
  const EngineStats st = s.context().engine->stats();
  EXPECT_EQ(st.kv_used, 0);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_GT(st.requests_aborted, 0) << "disconnected streams were aborted";
  std::printf("load: %d complete, %d disconnected, %ld aborted in the engine\n", complete.load(), cancelled.load(),
              long(st.requests_aborted));
  Reply ok = post(s, "/generate", json{{"input_ids", {1, 2, 3}}, {"sampling_params", {{"max_new_tokens", 2}}}});
  EXPECT_EQ(ok.status, 200);
}

TEST(ServerLoad, GracefulStop) {
  ServerOptions o = text_options();
  o.shutdown_grace_s = 0;
  auto s = std::make_unique<Server>(o);
  s->start();
  std::thread t([&] {
    Reply r = post(*s, "/generate", json{{"input_ids", {1, 2}}, {"sampling_params", {{"max_new_tokens", 1000}, {"ignore_eos", true}}}});
    // Aborted by the shutdown (or, on a fast machine, already done): it ends rather than hangs.
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string type = r.j["meta_info"]["finish_reason"]["type"];
    EXPECT_TRUE(type == "abort" || type == "length") << type;
  });
  // Stop once the request is in the engine (on a loaded machine it may take a while to arrive).
  for (int i = 0; i < 1000 && s->context().engine->stats().running == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s->stop();
  t.join();
  EXPECT_NE(get(*s, "/health").status, 200) << "no longer serving";
  EXPECT_EQ(s->context().engine->stats().running, 0);
}

}  // namespace
}  // namespace sparrow::server::test
