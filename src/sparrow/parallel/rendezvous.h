// Multi-node bootstrap over plain TCP: node 0 hands one small blob (the NCCL unique id) to
// every other node. It is the only thing the nodes must agree on before NCCL can connect
// them itself, so a single request/answer per node is enough; no launcher, MPI or store.
//
// Protocol, integers big-endian: a joining node sends
//   "SPRZ" | version u32 | node_rank u32 | nnodes u32 | payload bytes u32
// and node 0 answers a status u32 (0: accepted, else a RendezvousReject) followed, when
// accepted, by the payload. Node 0 checks that every peer agrees on nnodes and the payload
// size, and that each node rank 1..nnodes-1 comes exactly once.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

#include "sparrow/parallel/host_port.h"

namespace sparrow {

enum class RendezvousReject : uint32_t { kNone = 0, kNnodes = 1, kNodeRank = 2, kDuplicate = 3, kSize = 4, kVersion = 5 };

// Node 0's side. Listens at once (so peers that come before serve() wait in the backlog).
class RendezvousServer {
 public:
  // Every interface at `port`; 0 picks a free port (tests), see port().
  explicit RendezvousServer(int port);
  ~RendezvousServer();
  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;
  int port() const { return port_; }

  // Hands `payload` to nodes 1..nnodes-1 and returns when each has been sent it. Throws
  // Error naming the missing node ranks if they have not all come within `timeout`, and
  // InputError when a peer was started with a different --nnodes or a repeated
  // --node-rank. Connections that do not speak the protocol are dropped and ignored.
  void serve(int nnodes, std::span<const std::byte> payload, std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A joining node's side: connects to node 0 (retrying until `timeout`: node 0 may start
// later), introduces itself and returns the payload (`size` bytes). Throws Error when node
// 0 cannot be reached in time, InputError when node 0 rejects this node or `node0` does not
// resolve.
std::vector<std::byte> rendezvous_fetch(const HostPort& node0, int node_rank, int nnodes, size_t size,
                                        std::chrono::milliseconds timeout);

}  // namespace sparrow
