// NcclCommunicator: the Communicator of one GPU rank over NCCL. Every pointer is a DEVICE
// pointer; every call is enqueued on the calling thread's current stream
// (cuda::current_stream()) and returns without waiting, so later work on that stream sees
// the result (barrier() is the exception: it waits). The thread must keep the rank's device
// current (NcclWorld::communicator sets it).
//
// Reductions, two modes:
//   exact order (default): all_reduce gathers every rank's buffer into device scratch and a
//     kernel sums them in the Communicator's rank-order tree (kernels/cuda/rank_tree_sum.h), so
//     every rank gets the in-process backend's bits; reduce_scatterv sends each rank its
//     block from every peer (grouped send/recv) and sums the same way. It moves (g-1) x the
//     buffer per rank instead of a ring's 2 (g-1)/g: the price of determinism.
//   fast (set_exact_order(false)): ncclAllReduce / ncclReduceScatter (grouped ncclReduce
//     for uneven blocks). NCCL picks ring or tree by size and topology, so the summation
//     order is NOT rank-order exact and may differ between runs, sizes and machines; fine
//     for the default (non-deterministic) serving mode, not for --enable-deterministic-inference.
//
// Scratch: allocated once when the communicator is made; a call that needs more throws
// (naming the size) instead of allocating on the serving path. Exact all_reduce runs in
// slices of what it holds (g * 4 bytes at least); exact reduce_scatterv needs
// g * counts[rank] * 4; gathers, all-to-all and the fast mode need none. reserve_scratch()
// grows it, at set-up time only.
#pragma once

#include <atomic>
#include <cstdint>

#include "sparrow/core/cuda/device.h"
#include "sparrow/parallel/communicator.h"

struct ncclComm;  // nccl.h's ncclComm_t is `ncclComm*`; kept out of this header

namespace sparrow {

class NcclCommunicator final : public Communicator {
 public:
  // `comm` may be null for a group of one (no NCCL needed: everything is a local copy).
  // Owns `comm` (ncclCommDestroy) when `owns_comm`. Bytes moved are added to `bytes`.
  NcclCommunicator(ncclComm* comm, bool owns_comm, int rank, int size, size_t scratch_bytes, bool exact_order,
                   std::atomic<uint64_t>* bytes);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce(float* data, size_t n) override;
  void all_gather(std::span<const std::byte> send, std::byte* recv) override;
  void all_gatherv(std::span<const std::byte> send, std::byte* recv, std::span<const size_t> counts) override;
  void reduce_scatterv(const float* send, float* recv, std::span<const size_t> counts) override;
  void all_to_all_v(const std::byte* send, std::span<const size_t> send_counts, std::byte* recv,
                    std::span<const size_t> recv_counts) override;
  void broadcast(std::byte* data, size_t bytes, int root) override;
  // Host buffers, staged through the scratch (a group of one: a plain memcpy, no CUDA).
  void all_gather_host(std::span<const std::byte> send, std::byte* recv) override;
  // All ranks have reached it and this rank's earlier work on the stream is done (a one-
  // float all-reduce, then a stream synchronize: not for use inside CUDA graph capture).
  void barrier() override;

  // Every rank of the group must use the same mode.
  void set_exact_order(bool on) { exact_ = on; }
  bool exact_order() const { return exact_; }
  size_t scratch_bytes() const { return scratch_bytes_; }
  // Grows the scratch to at least `bytes` (one cudaMalloc, after the device is idle).
  void reserve_scratch(size_t bytes);
  ncclComm* nccl() const { return comm_; }

 private:
  float* scratch_for(size_t bytes, const char* op) const;
  void count(double bytes) const;

  ncclComm* comm_;
  bool owns_comm_;
  int rank_, size_;
  bool exact_;
  std::atomic<uint64_t>* bytes_;
  // The first kFlagBytes hold barrier()'s float; the rest is the reduction scratch.
  static constexpr size_t kFlagBytes = 256;
  cuda::DeviceBuffer buffer_;
  size_t scratch_bytes_ = 0;
};

}  // namespace sparrow
