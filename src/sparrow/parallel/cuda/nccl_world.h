// NcclWorld: the NCCL backend's world, one process per node and one thread per GPU rank.
// Like InProcessWorld it hands out communicators (communicator(rank), group(ranks, rank));
// each is an NcclCommunicator on DEVICE pointers (nccl_communicator.h).
//
// Ranks: the world's `size` ranks split evenly over `nnodes` processes; node k runs ranks
// [k * size / nnodes, (k + 1) * size / nnodes) on its GPUs `devices` (default 0, 1, ...).
// Bootstrap: with one node the constructor makes the NCCL unique id itself; with several,
// node 0 makes it and serves it at `init_addr` (parallel/rendezvous.h) and the others fetch
// it there, so the constructor blocks until every node has come (or the timeout passes).
//
// Threads: NCCL set-up is collective. Every rank of the world (on every node) must call
// communicator(rank) from its own thread at about the same time, then the same sequence
// of group() calls (RankComms::create does exactly this).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sparrow/parallel/communicator.h"
#include "sparrow/parallel/cuda/nccl_communicator.h"

namespace sparrow {

struct NcclWorldOptions {
  int size = 1;               // ranks over all nodes
  int nnodes = 1, node_rank = 0;
  std::string init_addr;      // host:port of node 0's rendezvous; needed when nnodes > 1
  std::vector<int> devices;   // CUDA device of each of this node's ranks; empty: 0, 1, ...
  // Device scratch of every communicator for the exact-order reductions (see
  // NcclCommunicator): g * n * 4 bytes for the largest exact all_reduce of n floats.
  size_t scratch_bytes = size_t(64) << 20;
  bool exact_order = true;    // false: NCCL's own (not rank-order exact) reductions
  std::chrono::milliseconds rendezvous_timeout = std::chrono::minutes(5);
};

class NcclWorld final : public CommWorld {
 public:
  explicit NcclWorld(NcclWorldOptions o);
  // Frees the world communicators (the groups belong to whoever holds them).
  ~NcclWorld() override;
  NcclWorld(const NcclWorld&) = delete;
  NcclWorld& operator=(const NcclWorld&) = delete;

  int size() const override { return opts_.size; }
  int local_size() const { return local_size_; }                // ranks on this node
  int first_rank() const { return opts_.node_rank * local_size_; }  // world rank of this node's first
  int device(int rank) const;                                    // the GPU of a rank of this node

  // Call from `rank`'s thread (a rank of this node): makes the thread's current device the
  // rank's, creates the rank's NCCL communicator over the world on first use (collective:
  // blocks until every rank has called) and returns a communicator over it with its own
  // scratch. The world keeps that NCCL communicator, as the parent of every group().
  std::unique_ptr<Communicator> communicator(int rank) override;
  // Collective over the WHOLE world, unlike InProcessWorld::group: every rank calls it at
  // the same time, each with its own group, and the groups of one round partition the
  // world (each rank is in exactly one; RankComms::create's rounds do). One ncclCommSplit
  // of the world (color: the group's first rank). A group of one gets a communicator
  // without NCCL. Throws if NCCL's resulting group disagrees with `ranks`.
  std::unique_ptr<Communicator> group(std::span<const int> ranks, int rank) override;
  // Bytes this node's ranks received through collectives: the traffic actually issued
  // (exact all_reduce: (g-1) x the buffer; fast: a ring's 2 (g-1)/g), not the in-process
  // world's bandwidth-optimal estimate.
  uint64_t bytes_moved() const override { return bytes_.load(); }

 private:
  ncclComm* root(int rank);  // this rank's world communicator, made on first use
  int local_index(int rank) const;

  NcclWorldOptions opts_;
  int local_size_ = 1;
  std::vector<std::byte> id_;           // the ncclUniqueId every rank joins with
  std::vector<ncclComm*> roots_;        // per local rank; each slot touched by its own thread
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace sparrow
