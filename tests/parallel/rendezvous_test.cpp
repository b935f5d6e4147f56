// The multi-node TCP rendezvous on localhost: node 0 hands a 128-byte id (the size of an
// ncclUniqueId) to the other nodes, whichever starts first; a node that never comes and a
// node 0 that never answers time out with a clear message; misconfigured nodes are named.
#include "sparrow/parallel/rendezvous.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "sparrow/core/error.h"

namespace sparrow {
namespace {

using namespace std::chrono_literals;

std::vector<std::byte> make_id() {
  std::vector<std::byte> id(128);
  for (size_t i = 0; i < id.size(); ++i) id[i] = std::byte(i * 7 + 3);
  return id;
}

HostPort local(int port) { return HostPort{"127.0.0.1", port}; }

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Rendezvous, TwoNodesExchangeTheId) {
  const std::vector<std::byte> id = make_id();
  RendezvousServer server(0);
  std::vector<std::byte> got;
  std::thread node1([&] { got = rendezvous_fetch(local(server.port()), 1, 2, id.size(), 10s); });
  server.serve(2, id, 10s);
  node1.join();
  EXPECT_EQ(got, id);
}

TEST(Rendezvous, PeersMayStartBeforeNodeZeroListens) {
  const std::vector<std::byte> id = make_id();
  // Learn a free port, release it, and start the joining nodes before node 0 listens on it:
  // they keep retrying until it does.
  const int port = RendezvousServer(0).port();
  std::vector<std::vector<std::byte>> got(3);
  std::vector<std::thread> nodes;
  for (int r = 1; r <= 2; ++r) nodes.emplace_back([&, r] { got[size_t(r)] = rendezvous_fetch(local(port), r, 3, id.size(), 10s); });
  std::this_thread::sleep_for(300ms);
  RendezvousServer server(port);
  server.serve(3, id, 10s);
  for (auto& t : nodes) t.join();
  EXPECT_EQ(got[1], id);
  EXPECT_EQ(got[2], id);
}

TEST(Rendezvous, NodeZeroTimesOutNamingTheMissingNodes) {
  RendezvousServer server(0);
  std::thread node2([&] { (void)rendezvous_fetch(local(server.port()), 2, 3, 128, 10s); });
  const auto start = std::chrono::steady_clock::now();
  const std::string e = error_of([&] { server.serve(3, make_id(), 500ms); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  node2.join();
  EXPECT_NE(e.find("1 of the 2 other nodes came"), std::string::npos) << e;
  EXPECT_NE(e.find("missing node ranks: 1"), std::string::npos) << e;
}

TEST(Rendezvous, JoiningNodeTimesOutWhenNodeZeroNeverComes) {
  const int port = RendezvousServer(0).port();  // nothing listens there any more
  const std::string e = error_of([&] { (void)rendezvous_fetch(local(port), 1, 2, 128, 400ms); });
  EXPECT_NE(e.find("could not reach node 0 at 127.0.0.1:" + std::to_string(port)), std::string::npos) << e;
  EXPECT_NE(e.find("within 0.4 s"), std::string::npos) << e;
}

TEST(Rendezvous, MismatchedNodeCountIsRejectedOnBothSides) {
  RendezvousServer server(0);
  std::string joiner;
  std::thread node1([&] { joiner = error_of([&] { (void)rendezvous_fetch(local(server.port()), 1, 3, 128, 10s); }); });
  const std::string e = error_of([&] { server.serve(2, make_id(), 10s); });
  node1.join();
  EXPECT_NE(e.find("rejected a node (--node-rank 1, --nnodes 3)"), std::string::npos) << e;
  EXPECT_NE(joiner.find("its --nnodes differs from node 0's"), std::string::npos) << joiner;
}

TEST(Rendezvous, DuplicateNodeRankIsRejected) {
  RendezvousServer server(0);
  const std::vector<std::byte> id = make_id();
  std::vector<std::byte> first;
  std::string second;
  // Both connect before serve() starts and wait in the backlog, the first one first.
  std::thread a([&] { first = rendezvous_fetch(local(server.port()), 1, 3, id.size(), 10s); });
  std::this_thread::sleep_for(200ms);
  std::thread b([&] { second = error_of([&] { (void)rendezvous_fetch(local(server.port()), 1, 3, id.size(), 10s); }); });
  std::this_thread::sleep_for(200ms);
  const std::string e = error_of([&] { server.serve(3, id, 10s); });
  a.join();
  b.join();
  EXPECT_EQ(first, id);
  EXPECT_NE(e.find("rejected a node (--node-rank 1, --nnodes 3)"), std::string::npos) << e;
  EXPECT_NE(second.find("another node already joined with the same --node-rank"), std::string::npos) << second;
}

TEST(Rendezvous, StrayConnectionsAreIgnored) {
  const std::vector<std::byte> id = make_id();
  RendezvousServer server(0);
  std::vector<std::byte> got;
  std::thread node1([&] {
    // Someone else's client: connects, sends garbage, leaves.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(server.port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) (void)!::write(fd, "GET / HTTP/1.0\r\n\r\n", 18);
    ::close(fd);
    got = rendezvous_fetch(local(server.port()), 1, 2, id.size(), 10s);
  });
  server.serve(2, id, 10s);
  node1.join();
  EXPECT_EQ(got, id);
}

TEST(Rendezvous, PortInUseIsAClearError) {
  RendezvousServer first(0);
  const std::string e = error_of([&] { RendezvousServer second(first.port()); });
  EXPECT_NE(e.find("cannot listen on port " + std::to_string(first.port())), std::string::npos) << e;
}

}  // namespace
}  // namespace sparrow
