#include "sparrow/parallel/rendezvous.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kMagic[4] = {'S', 'P', 'R', 'Z'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHelloBytes = 20;
// How long node 0 gives one connection to introduce itself: a stray client that connects
// and says nothing must not hold up the nodes queued behind it.
constexpr auto kHelloTimeout = 5s;

// Owns a socket descriptor.
class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string errno_text(int e) { return std::system_category().message(e); }

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : int(std::min<int64_t>(left, INT_MAX));
}

double seconds(std::chrono::milliseconds d) { return double(d.count()) / 1000.0; }

// Waits until `fd` is ready for `events` or the deadline passes (false).
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) throw_error("poll failed: {}", errno_text(errno));
  }
}

// Exactly n bytes before the deadline, or Error saying what went wrong (non-blocking fds).
void send_all(int fd, const std::byte* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    if (!wait_for(fd, POLLOUT, deadline)) throw_error("timed out sending");
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw_error("send failed: {}", errno_text(errno));
    }
    p += k;
    n -= size_t(k);
  }
}

void recv_all(int fd, std::byte* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    if (!wait_for(fd, POLLIN, deadline)) throw_error("timed out with {} bytes still to receive", n);
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k == 0) throw_error("connection closed with {} bytes still to receive", n);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw_error("recv failed: {}", errno_text(errno));
    }
    p += k;
    n -= size_t(k);
  }
}

void put_u32(std::byte* p, uint32_t v) {
  const std::byte b[4] = {std::byte(v >> 24), std::byte(v >> 16), std::byte(v >> 8), std::byte(v)};
  std::memcpy(p, b, 4);
}
uint32_t get_u32(const std::byte* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

const char* reject_reason(RendezvousReject why) {
  switch (why) {
    case RendezvousReject::kNnodes: return "its --nnodes differs from node 0's";
    case RendezvousReject::kNodeRank: return "its --node-rank is outside 1..nnodes-1";
    case RendezvousReject::kDuplicate: return "another node already joined with the same --node-rank";
    case RendezvousReject::kSize: return "it expects an id of a different size (different Sparrow or NCCL builds?)";
    case RendezvousReject::kVersion: return "it speaks another rendezvous protocol version (different Sparrow builds?)";
    default: return "unknown reason";
  }
}

// A connected non-blocking socket to `a`, or Error.
Socket connect_to(const addrinfo& a, Clock::time_point deadline) {
  Socket s(::socket(a.ai_family, a.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a.ai_protocol));
  if (s.get() < 0) throw_error("socket: {}", errno_text(errno));
  if (::connect(s.get(), a.ai_addr, a.ai_addrlen) == 0) return s;
  if (errno != EINPROGRESS) throw_error("connect: {}", errno_text(errno));
  if (!wait_for(s.get(), POLLOUT, deadline)) throw_error("connect timed out");
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) throw_error("connect: {}", errno_text(err));
  return s;
}

// A socket of `family` bound to every interface at `port`, or an invalid one with `err`.
Socket bind_wildcard(int family, int port, int& err) {
  Socket s(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (s.get() < 0) {
    err = errno;
    return s;
  }
  const int one = 1, zero = 0;
  // Lets node 0 restart at once on the same port (the old socket may linger in TIME_WAIT).
  (void)::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (family == AF_INET6) {
    (void)::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(uint16_t(port));
    rc = ::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(port));
    rc = ::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    err = errno;
    return Socket();
  }
  return s;
}

}  // namespace

RendezvousServer::RendezvousServer(int port) {
  SPARROW_REQUIRE(port >= 0 && port <= 65535, "rendezvous port {} is outside 0..65535", port);
  // An IPv6 wildcard socket also accepts IPv4 peers; where IPv6 is missing or disabled,
  // a plain IPv4 one.
  int err = 0;
  Socket s = bind_wildcard(AF_INET6, port, err);
  if (s.get() < 0 && err != EADDRINUSE && err != EACCES) s = bind_wildcard(AF_INET, port, err);
  if (s.get() < 0)
    throw_input_error("rendezvous: node 0 cannot listen on port {}: {} (is another job using it? choose another "
                      "--dist-init-addr port)", port, errno_text(err));
  if (::listen(s.get(), 128) != 0) throw_error("rendezvous: listen on port {}: {}", port, errno_text(errno));
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0)
    throw_error("rendezvous: getsockname: {}", errno_text(errno));
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  fd_ = s.release();
}

RendezvousServer::~RendezvousServer() {
  if (fd_ >= 0) ::close(fd_);
}

void RendezvousServer::serve(int nnodes, std::span<const std::byte> payload, std::chrono::milliseconds timeout) {
  SPARROW_CHECK(nnodes >= 1, "nnodes {}", nnodes);
  const auto deadline = Clock::now() + timeout;
  std::vector<bool> joined(size_t(nnodes), false);
  joined[0] = true;
  int waiting = nnodes - 1;
  while (waiting > 0) {
    if (!wait_for(fd_, POLLIN, deadline)) {
      std::string missing;
      for (int r = 1; r < nnodes; ++r)
        if (!joined[size_t(r)]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      throw_error("rendezvous: node 0 waited {:.1f} s on port {} and {} of the {} other nodes came; missing node "
                  "ranks: {} (start them with --nnodes {} and --dist-init-addr naming this host and port {})",
                  seconds(timeout), port_, nnodes - 1 - waiting, nnodes - 1, missing, nnodes, port_);
    }
    Socket c(::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (c.get() < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) continue;
      throw_error("rendezvous: accept on port {}: {}", port_, errno_text(errno));
    }
    std::byte hello[kHelloBytes];
    try {
      recv_all(c.get(), hello, sizeof hello, std::min(deadline, Clock::now() + kHelloTimeout));
    } catch (const Error&) {
      continue;  // not one of ours, or it went away: it will retry if it is a node
    }
    if (std::memcmp(hello, kMagic, sizeof kMagic) != 0) continue;
    const uint32_t version = get_u32(hello + 4), rank = get_u32(hello + 8), peer_nnodes = get_u32(hello + 12),
                   size = get_u32(hello + 16);
    RendezvousReject why = RendezvousReject::kNone;
    if (version != kVersion) why = RendezvousReject::kVersion;
    else if (peer_nnodes != uint32_t(nnodes)) why = RendezvousReject::kNnodes;
    else if (rank == 0 || rank >= uint32_t(nnodes)) why = RendezvousReject::kNodeRank;
    else if (joined[rank]) why = RendezvousReject::kDuplicate;
    else if (size != payload.size()) why = RendezvousReject::kSize;
    std::byte status[4];
    put_u32(status, uint32_t(why));
    try {
      send_all(c.get(), status, sizeof status, deadline);
      if (why == RendezvousReject::kNone) send_all(c.get(), payload.data(), payload.size(), deadline);
    } catch (const Error&) {
      if (why == RendezvousReject::kNone) continue;  // the node went away; it retries
    }
    // A node started with other settings means the whole job is misconfigured: stop here
    // too rather than wait for the timeout.
    if (why != RendezvousReject::kNone)
      throw_input_error("rendezvous: node 0 (--nnodes {}) rejected a node (--node-rank {}, --nnodes {}): {}", nnodes,
                        rank, peer_nnodes, reject_reason(why));
    joined[rank] = true;
    --waiting;
  }
}

std::vector<std::byte> rendezvous_fetch(const HostPort& node0, int node_rank, int nnodes, size_t size,
                                        std::chrono::milliseconds timeout) {
  SPARROW_CHECK(node_rank >= 1 && node_rank < nnodes, "node rank {} of {}", node_rank, nnodes);
  const auto deadline = Clock::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(node0.host.c_str(), std::to_string(node0.port).c_str(), &hints, &found);
  if (rc != 0) throw_input_error("rendezvous: cannot resolve node 0's address {}: {}", node0.str(), gai_strerror(rc));
  const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> hold(found, freeaddrinfo);

  std::byte hello[kHelloBytes];
  std::memcpy(hello, kMagic, sizeof kMagic);
  put_u32(hello + 4, kVersion);
  put_u32(hello + 8, uint32_t(node_rank));
  put_u32(hello + 12, uint32_t(nnodes));
  put_u32(hello + 16, uint32_t(size));
  std::string last_error = "none";
  for (;;) {
    // Every address the name resolves to, in order; node 0 may not listen yet, so a
    // refused connection is retried until the deadline.
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      try {
        Socket s = connect_to(*a, deadline);
        send_all(s.get(), hello, sizeof hello, deadline);
        std::byte status[4];
        recv_all(s.get(), status, sizeof status, deadline);
        const auto why = RendezvousReject(get_u32(status));
        if (why != RendezvousReject::kNone)
          throw_input_error("rendezvous: node 0 at {} rejected node {} (--nnodes {}): {}", node0.str(), node_rank, nnodes,
                            reject_reason(why));
        std::vector<std::byte> payload(size);
        recv_all(s.get(), payload.data(), size, deadline);
        return payload;
      } catch (const InputError&) {
        throw;
      } catch (const Error& e) {
        last_error = e.what();
      }
    }
    if (Clock::now() >= deadline)
      throw_error("rendezvous: node {} could not reach node 0 at {} within {:.1f} s (last error: {}); is node 0 "
                  "running with the same --dist-init-addr and --nnodes {}?",
                  node_rank, node0.str(), seconds(timeout), last_error, nnodes);
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(100ms, std::chrono::milliseconds(ms_left(deadline))));
  }
}

}  // namespace sparrow
