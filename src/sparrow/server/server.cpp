#include "sparrow/server/server.h"

#include <sys/socket.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "sparrow/core/log.h"
#include "sparrow/server/http_util.h"
#include "sparrow/server/routes.h"

namespace sparrow::server {
namespace {

// MemAvailable from /proc/meminfo, bytes (0 if unknown).
int64_t available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

EngineOptions engine_options(const ServerOptions& o) {
  EngineOptions e;
  SPARROW_REQUIRE(o.max_running_requests >= 1, "--max-running-requests must be >= 1");
  SPARROW_REQUIRE(o.max_total_tokens >= 0, "--max-total-tokens must be >= 0");
  SPARROW_REQUIRE(o.mem_fraction_static >= 0 && o.mem_fraction_static < 1, "--mem-fraction-static must be in [0, 1)");
  SPARROW_REQUIRE(o.context_length >= 0, "--context-length must be >= 0");
  e.max_total_tokens = o.max_total_tokens;
  apply_device_flags(o.device, o.mem_fraction_static, o.disable_cuda_graph, o.cuda_graph_max_bs, e.device, e.gpu);
  if (o.max_total_tokens == 0 && o.mem_fraction_static > 0 && e.device == Device::kCPU) {
    const int64_t avail = available_memory_bytes();
    SPARROW_REQUIRE(avail > 0, "--mem-fraction-static: cannot read MemAvailable from /proc/meminfo");
    e.kv_memory_bytes = int64_t(double(avail) * o.mem_fraction_static);
  }
  e.max_running_requests = o.max_running_requests;
  e.chunked_prefill_size = o.chunked_prefill_size;
  e.context_length = o.context_length;
  e.disable_radix_cache = o.disable_radix_cache;
  if (o.schedule_policy == "fcfs") e.schedule_policy = SchedulePolicy::kFcfs;
  else if (o.schedule_policy == "lpm") e.schedule_policy = SchedulePolicy::kLpm;
  else throw InputError("--schedule-policy must be fcfs or lpm, got " + o.schedule_policy);
  e.log_interval_s = o.log_interval;
  if (o.kv_cache_dtype != "auto") e.kv_cache_dtype = parse_dtype(o.kv_cache_dtype);
  e.parallel = o.parallel;
  e.dp_router = o.dp_router;
  return e;
}

const char* status_message(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "unauthorized";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 413: return "request body too large";
    case 503: return "the server is shutting down";
    default: return "error";
  }
}

}  // namespace

Server::Server(ServerOptions opts) {
  ctx_.opts = std::move(opts);
  ServerOptions& o = ctx_.opts;
  SPARROW_REQUIRE(!o.model_path.empty(), "--model-path is required");
  SPARROW_REQUIRE(o.max_request_bytes > 0, "--max-request-bytes must be > 0");
  ctx_.start_time_s = now_s();
  const EngineOptions eo = engine_options(o);
  if (!o.skip_tokenizer_init) {
    ctx_.tokenizer_path = o.tokenizer_path.empty() ? o.model_path : o.tokenizer_path;
    SPARROW_REQUIRE(std::filesystem::exists(std::filesystem::path(ctx_.tokenizer_path) / "tokenizer.json"),
                    "no tokenizer.json in {}: pass --tokenizer-path DIR, or --skip-tokenizer-init to serve token ids only",
                    ctx_.tokenizer_path);
    ctx_.tokenizer = Tokenizer::from_dir(ctx_.tokenizer_path);
  }
  ctx_.model_name = o.served_model_name.empty() ? o.model_path : o.served_model_name;
  if (o.enable_metrics) ctx_.metrics = std::make_unique<Metrics>(ctx_.model_name);
  log(LogLevel::kInfo, "loading model from {} ({}, {})", o.model_path, o.load_format, o.dtype);
  LoadedModel m = load_model_source(o.model_path, o.load_format, parse_dtype(o.dtype), o.random_seed.value_or(0));
  if (ctx_.tokenizer)
    SPARROW_REQUIRE(ctx_.tokenizer->vocab_size() <= m.config.vocab_size,
                    "the tokenizer has {} tokens but the model's vocabulary is {}: wrong --tokenizer-path?",
                    ctx_.tokenizer->vocab_size(), m.config.vocab_size);
  ctx_.engine = std::make_unique<Engine>(std::move(m), ctx_.tokenizer.get(), eo);
  install_handlers();
}

Server::~Server() { stop(); }

void Server::install_handlers() {
  const ServerOptions& o = ctx_.opts;
  const int threads = o.http_threads > 0 ? o.http_threads : std::clamp(o.max_running_requests + 16, 32, 1024);
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_.set_payload_max_length(o.max_request_bytes);
  http_.set_keep_alive_timeout(5);
  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (ctx_.shutting_down) {
      send_error(res, 503, "the server is shutting down");
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string& key = ctx_.opts.api_key;
    if (!key.empty() && req.path != "/health" && req.path != "/metrics") {
      const std::string auth = req.get_header_value("Authorization");
      if (auth != "Bearer " + key) {
        send_error(res, 401, auth.empty() ? "missing API key: send Authorization: Bearer <key>" : "invalid API key");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors httplib produces itself (404, 413, ...) get the same JSON shape as ours.
  http_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg = status_message(res.status);
    if (res.status == 404) msg = "not found: " + req.method + " " + req.path;
    if (res.status == 413)
      msg = fmt::format("request body too large: the limit is {} bytes (--max-request-bytes)", ctx_.opts.max_request_bytes);
    send_error(res, res.status, msg);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (res.status >= 400) {
      if (ctx_.metrics) ctx_.metrics->on_http_error(res.status);
      log(LogLevel::kDebug, "{} {} -> {}", req.method, req.path, res.status);
    }
  });
  register_native_routes(http_, ctx_);
  register_openai_routes(http_, ctx_);
}

void Server::start() {
  const ServerOptions& o = ctx_.opts;
  // A client that disconnects must not kill the process with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  if (o.port == 0) {
    port_ = http_.bind_to_any_port(o.host);
    SPARROW_REQUIRE(port_ > 0, "cannot bind {}", o.host);
  } else {
    SPARROW_REQUIRE(http_.bind_to_port(o.host, o.port), "cannot bind {}:{} (in use?)", o.host, o.port);
    port_ = o.port;
  }
  http_.raise_backlog(1024);
  listener_ = std::thread([this] { http_.listen_after_bind(); });
  log(LogLevel::kInfo, "serving {} on http://{}:{} (native /generate, OpenAI /v1/*)", ctx_.model_name, o.host, port_);
}

void HttpServer::raise_backlog(int n) {
  const socket_t fd = svr_sock_;
  if (fd != INVALID_SOCKET && ::listen(fd, n) != 0) log(LogLevel::kWarn, "cannot raise the listen backlog to {}", n);
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  ctx_.shutting_down = true;
  using namespace std::chrono;
  const auto deadline = steady_clock::now() + duration_cast<steady_clock::duration>(duration<double>(ctx_.opts.shutdown_grace_s));
  while (ctx_.in_flight > 0 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  if (ctx_.in_flight > 0) {
    log(LogLevel::kInfo, "shutdown: aborting {} requests in flight", ctx_.in_flight.load());
    ctx_.engine->abort("");
    const auto hard = steady_clock::now() + seconds(5);
    while (ctx_.in_flight > 0 && steady_clock::now() < hard) std::this_thread::sleep_for(milliseconds(20));
  }
  http_.stop();
  if (listener_.joinable()) listener_.join();
  log(LogLevel::kInfo, "server stopped");
}

void Server::wait() {
  if (listener_.joinable()) listener_.join();
}

void block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_shutdown_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace sparrow::server
