#include "sparrow/parallel/cuda/nccl_world.h"

#include <algorithm>
#include <cstring>

#include "sparrow/core/log.h"
#include "sparrow/parallel/cuda/nccl_check.h"
#include "sparrow/parallel/rendezvous.h"

namespace sparrow {

NcclWorld::NcclWorld(NcclWorldOptions o) : opts_(std::move(o)) {
  const int size = opts_.size, nnodes = opts_.nnodes, node = opts_.node_rank;
  SPARROW_REQUIRE(size >= 1, "NCCL world size {} must be >= 1", size);
  SPARROW_REQUIRE(nnodes >= 1 && node >= 0 && node < nnodes, "node rank {} of {} nodes", node, nnodes);
  SPARROW_REQUIRE(size % nnodes == 0, "a world of {} ranks does not split evenly over {} nodes", size, nnodes);
  local_size_ = size / nnodes;
  if (opts_.devices.empty())
    for (int i = 0; i < local_size_; ++i) opts_.devices.push_back(i);
  SPARROW_REQUIRE(int(opts_.devices.size()) == local_size_, "node {} runs {} ranks but {} devices were given", node,
                  local_size_, opts_.devices.size());
  int gpus = 0;
  SPARROW_CUDA_CHECK(cudaGetDeviceCount(&gpus));
  for (int d : opts_.devices)
    SPARROW_REQUIRE(d >= 0 && d < gpus, "node {} runs world ranks {}..{} on {} GPUs, but device {} does not exist (this machine has {})",
                    node, first_rank(), first_rank() + local_size_ - 1, local_size_, d, gpus);
  // The library may be newer or older than the header we compiled against (the PyTorch wheel).
  int version = 0;
  SPARROW_NCCL_CHECK(ncclGetVersion(&version));
  SPARROW_REQUIRE(version >= NCCL_VERSION(2, 18, 0), "the NCCL library loaded is version {}, older than 2.18 (ncclCommSplit)",
                  version);
  roots_.assign(size_t(local_size_), nullptr);

  ncclUniqueId id{};
  if (node == 0) SPARROW_NCCL_CHECK(ncclGetUniqueId(&id));
  if (nnodes > 1) {
    SPARROW_REQUIRE(!opts_.init_addr.empty(), "{} nodes need the address of node 0's rendezvous (--dist-init-addr)", nnodes);
    const HostPort addr = parse_host_port(opts_.init_addr);
    const auto blob = std::as_bytes(std::span(&id, 1));
    if (node == 0) {
      RendezvousServer server(addr.port);
      log(LogLevel::kInfo, "nccl: node 0 of {} waiting for the other nodes on port {}", nnodes, server.port());
      server.serve(nnodes, blob, opts_.rendezvous_timeout);
    } else {
      const std::vector<std::byte> got = rendezvous_fetch(addr, node, nnodes, blob.size(), opts_.rendezvous_timeout);
      std::memcpy(&id, got.data(), sizeof id);
    }
  }
  const auto bytes = std::as_bytes(std::span(&id, 1));
  id_.assign(bytes.begin(), bytes.end());
  log(LogLevel::kDebug, "nccl: world of {} ranks, node {} of {} runs ranks {}..{} (NCCL {})", size, node, nnodes,
      first_rank(), first_rank() + local_size_ - 1, version);
}

NcclWorld::~NcclWorld() {
  // Ranks of one process are finalized together by NCCL once the last of them is
  // destroyed, so destroying them one after another from this thread does not block.
  for (ncclComm* c : roots_)
    if (c != nullptr) (void)ncclCommDestroy(c);
}

int NcclWorld::local_index(int rank) const {
  SPARROW_CHECK(rank >= first_rank() && rank < first_rank() + local_size_, "rank {} is not on node {} (ranks {}..{})", rank,
                opts_.node_rank, first_rank(), first_rank() + local_size_ - 1);
  return rank - first_rank();
}

int NcclWorld::device(int rank) const { return opts_.devices[size_t(local_index(rank))]; }

ncclComm* NcclWorld::root(int rank) {
  ncclComm*& slot = roots_[size_t(local_index(rank))];
  if (slot == nullptr) {
    ncclUniqueId id;
    std::memcpy(&id, id_.data(), sizeof id);
    SPARROW_NCCL_CHECK(ncclCommInitRank(&slot, opts_.size, id, rank));
  }
  return slot;
}

std::unique_ptr<Communicator> NcclWorld::communicator(int rank) {
  SPARROW_CUDA_CHECK(cudaSetDevice(device(rank)));
  return std::make_unique<NcclCommunicator>(root(rank), false, rank, opts_.size, opts_.scratch_bytes, opts_.exact_order,
                                            &bytes_);
}

std::unique_ptr<Communicator> NcclWorld::group(std::span<const int> ranks, int rank) {
  const std::vector<int> members(ranks.begin(), ranks.end());
  const int index = group_index(ranks, rank), n = int(members.size());
  SPARROW_CHECK(members.front() >= 0 && members.back() < opts_.size, "group ranks outside the world of {}", opts_.size);
  SPARROW_CUDA_CHECK(cudaSetDevice(device(rank)));
  // Groups of one take part in the split (it is collective) but get no NCCL communicator.
  ncclComm* child = nullptr;
  SPARROW_NCCL_CHECK(ncclCommSplit(root(rank), n == 1 ? NCCL_SPLIT_NOCOLOR : members.front(), rank, &child, nullptr));
  if (n == 1) return std::make_unique<NcclCommunicator>(nullptr, false, 0, 1, 0, opts_.exact_order, &bytes_);
  int got_size = 0, got_rank = 0;
  SPARROW_NCCL_CHECK(ncclCommCount(child, &got_size));
  SPARROW_NCCL_CHECK(ncclCommUserRank(child, &got_rank));
  if (got_size != n || got_rank != index) {
    (void)ncclCommDestroy(child);
    throw_error("NcclWorld::group: rank {} asked for a group of {} ranks starting at {} (its index {}), but the split "
                "formed {} ranks with it at {}: every rank must call group() in the same round, with groups that "
                "partition the world",
                rank, n, members.front(), index, got_size, got_rank);
  }
  return std::make_unique<NcclCommunicator>(child, true, index, n, opts_.scratch_bytes, opts_.exact_order, &bytes_);
}

}  // namespace sparrow
