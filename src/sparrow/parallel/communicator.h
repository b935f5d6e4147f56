// Communicator: the one owner of every collective. Ranks of a group call the same
// collectives in the same order; each call returns when this rank's part is done.
//
// Reductions are sums in fp32 whose order is fixed by the group's shape alone: the ranks'
// contributions are combined by a binary tree in rank order ((r0 + r1) + (r2 + r3)) for
// every element, so results are bit-identical on every rank and do not depend on timing.
// That tree is what makes a tensor-parallel shard a subtree of the single-rank reduction
// (docs/numerics.md). Counts are in elements; "v" variants take per-rank counts (zero
// allowed: a rank with no tokens still takes part).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace sparrow {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] = sum over ranks of data[i], tree order.
  virtual void all_reduce(float* data, size_t n) = 0;
  // recv = concatenation of every rank's `send` (bytes each: send.size()), rank order.
  virtual void all_gather(std::span<const std::byte> send, std::byte* recv) = 0;
  // Same with per-rank byte counts (counts[r] bytes from rank r; counts[rank()] == send.size()).
  virtual void all_gatherv(std::span<const std::byte> send, std::byte* recv, std::span<const size_t> counts) = 0;
  // send holds size() consecutive blocks (counts[r] floats for rank r); rank r receives the
  // tree-ordered sum of every rank's block r.
  virtual void reduce_scatterv(const float* send, float* recv, std::span<const size_t> counts) = 0;
  // send_counts[r] bytes go to rank r (consecutive blocks of send, rank order); recv gets
  // recv_counts[r] bytes from rank r, in rank order.
  virtual void all_to_all_v(const std::byte* send, std::span<const size_t> send_counts, std::byte* recv,
                            std::span<const size_t> recv_counts) = 0;
  virtual void broadcast(std::byte* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // all_gather of small control values in HOST memory (a step's token counts), whatever
  // memory the backend's other collectives take. Returns with recv filled (a device backend
  // waits for its stream: not for use inside CUDA graph capture, except in a group of one).
  virtual void all_gather_host(std::span<const std::byte> send, std::byte* recv) { all_gather(send, recv); }

  // Convenience for equal blocks.
  void reduce_scatter(const float* send, float* recv, size_t per_rank) {
    std::vector<size_t> c(size_t(size()), per_rank);
    reduce_scatterv(send, recv, c);
  }
};

// Validates a group's member list (world ranks, strictly ascending, non-empty, containing
// `rank`) and returns `rank`'s index in it: the rank within the group, for every backend.
int group_index(std::span<const int> ranks, int rank);
// 0, 1, ..., size - 1: the members of a whole world.
std::vector<int> all_ranks(int size);

// A world of ranks that hands out communicators: what RankComms::create builds a rank's
// groups from, whatever the backend (in-process threads here, NCCL in parallel/cuda/).
class CommWorld {
 public:
  virtual ~CommWorld() = default;
  virtual int size() const = 0;
  // The communicator of `rank` over the whole world.
  virtual std::unique_ptr<Communicator> communicator(int rank) = 0;
  // A communicator over the sub-group `ranks` (world ranks, ascending), for the caller
  // `rank` (a member). Backends differ in who must call (see each one).
  virtual std::unique_ptr<Communicator> group(std::span<const int> ranks, int rank) = 0;
  // Bytes the collectives moved so far, summed over the ranks of this process.
  virtual uint64_t bytes_moved() const = 0;
};

// In-process backend: every rank is a thread of this process sharing one World. Collectives
// exchange pointers and each rank reads its peers' buffers directly (no copies through a
// transport), then all ranks meet at a barrier before any buffer is reused.
class InProcessWorld final : public CommWorld {
 public:
  explicit InProcessWorld(int size);
  ~InProcessWorld() override;
  int size() const override;
  std::unique_ptr<Communicator> communicator(int rank) override;
  // Every member must call with the same `ranks`; groups with the same member list share
  // their exchange state. Non-members do not call.
  std::unique_ptr<Communicator> group(std::span<const int> ranks, int rank) override;
  // Counted as a bandwidth-optimal transport would move them: each rank's all-reduce /
  // reduce-scatter traffic as a ring (2 (g-1)/g and (g-1)/g of the buffer), gathers and
  // all-to-all as the bytes a rank receives from its peers. The basis of the
  // bytes-per-token figures in bench/.
  uint64_t bytes_moved() const override;

  struct Group;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sparrow
