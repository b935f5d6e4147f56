// The HTTP server of `sparrow serve`: loads tokenizer and model, runs an Engine, and serves
// SGLang's native routes and the OpenAI-compatible routes on httplib's thread pool.
//
// Data flow: HTTP request -> parse + validate (request_parsing) -> engine Requests
// (RequestGroup) -> engine thread -> sinks push OutputChunks into the group's queue -> the
// handler thread turns them into JSON or SSE events.
#pragma once

#include <httplib.h>

#include <memory>
#include <thread>

#include "sparrow/server/server_context.h"
#include "sparrow/server/server_options.h"

namespace sparrow::server {

// httplib::Server listens with a backlog of 5, which drops connections when many clients
// connect at once; this raises it once the socket is bound.
class HttpServer : public httplib::Server {
 public:
  void raise_backlog(int n);
};

class Server {
 public:
  // Loads everything; InputError for bad options or files.
  explicit Server(ServerOptions opts);
  ~Server();  // stop()

  // Binds host:port (port 0: any free port) and serves on a background thread.
  void start();
  int port() const { return port_; }
  // Graceful stop: new requests get 503, requests in flight get up to shutdown_grace_s to
  // finish, then are aborted; the listener closes. Idempotent.
  void stop();
  // Blocks until stop() was called (by another thread) and the listener has exited.
  void wait();

  ServerContext& context() { return ctx_; }

 private:
  void install_handlers();

  ServerContext ctx_;
  HttpServer http_;
  std::thread listener_;
  int port_ = 0;
  bool stopped_ = false;
};

// Blocks SIGINT / SIGTERM in the calling thread (call before any thread starts, so every
// thread inherits the mask) and returns a waiter: calling it blocks until one arrives.
void block_shutdown_signals();
int wait_for_shutdown_signal();

}  // namespace sparrow::server
