#include "sparrow/parallel/cuda/nccl_communicator.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "sparrow/parallel/cuda/nccl_check.h"
#include "sparrow/kernels/cuda/rank_tree_sum.h"

namespace sparrow {
namespace {

// One NCCL group call (ncclGroupStart .. ncclGroupEnd) whose end also runs when a call in
// between throws, so the thread is never left inside an open group.
class NcclGroup {
 public:
  NcclGroup() { SPARROW_NCCL_CHECK(ncclGroupStart()); }
  ~NcclGroup() {
    if (open_) (void)ncclGroupEnd();
  }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;
  void end() {
    open_ = false;
    SPARROW_NCCL_CHECK(ncclGroupEnd());
  }

 private:
  bool open_ = true;
};

// Start of each rank's block (counts in any unit).
std::vector<size_t> offsets(std::span<const size_t> counts) {
  std::vector<size_t> off(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) off[r] = off[r - 1] + counts[r - 1];
  return off;
}

bool all_equal(std::span<const size_t> counts) {
  for (size_t c : counts)
    if (c != counts[0]) return false;
  return true;
}

void copy_d2d(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes > 0 && dst != src) SPARROW_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

}  // namespace

NcclCommunicator::NcclCommunicator(ncclComm* comm, bool owns_comm, int rank, int size, size_t scratch_bytes,
                                   bool exact_order, std::atomic<uint64_t>* bytes)
    : comm_(comm), owns_comm_(owns_comm), rank_(rank), size_(size), exact_(exact_order), bytes_(bytes) {
  SPARROW_CHECK(size >= 1 && rank >= 0 && rank < size, "rank {} of {}", rank, size);
  SPARROW_CHECK(comm != nullptr || size == 1, "a group of {} ranks needs a NCCL communicator", size);
  // A group of one without NCCL reduces nothing and never waits on a flag: no memory.
  if (comm_ != nullptr) {
    buffer_ = cuda::DeviceBuffer(kFlagBytes + scratch_bytes);
    scratch_bytes_ = scratch_bytes;
    SPARROW_CUDA_CHECK(cudaMemset(buffer_.data(), 0, kFlagBytes));
  }
}

NcclCommunicator::~NcclCommunicator() {
  if (owns_comm_ && comm_ != nullptr) (void)ncclCommDestroy(comm_);
}

void NcclCommunicator::reserve_scratch(size_t bytes) {
  if (bytes <= scratch_bytes_ || comm_ == nullptr) return;
  // The old buffer may still be read by queued work; freeing waits for nothing by itself.
  SPARROW_CUDA_CHECK(cudaDeviceSynchronize());
  buffer_ = cuda::DeviceBuffer(kFlagBytes + bytes);
  scratch_bytes_ = bytes;
  SPARROW_CUDA_CHECK(cudaMemset(buffer_.data(), 0, kFlagBytes));
}

float* NcclCommunicator::scratch_for(size_t bytes, const char* op) const {
  if (bytes > scratch_bytes_)
    throw_error("NcclCommunicator::{} over {} ranks needs {} bytes of device scratch, this communicator has {}: raise "
                "NcclWorldOptions::scratch_bytes or call reserve_scratch() at set-up",
                op, size_, bytes, scratch_bytes_);
  return reinterpret_cast<float*>(static_cast<std::byte*>(buffer_.data()) + kFlagBytes);
}

void NcclCommunicator::count(double bytes) const {
  if (bytes_ != nullptr && bytes > 0) bytes_->fetch_add(uint64_t(bytes), std::memory_order_relaxed);
}

void NcclCommunicator::all_reduce(float* data, size_t n) {
  if (size_ == 1 || n == 0) return;  // the sum of one contribution is itself
  const cudaStream_t s = cuda::current_stream();
  const double g = size_, buf = double(n * sizeof(float));
  if (!exact_) {
    count(2.0 * (g - 1) / g * buf);
    SPARROW_NCCL_CHECK(ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, s));
    return;
  }
  // In slices of what the scratch holds: the tree is elementwise, so slicing keeps the bits
  // (a prefill step's slot values can be far larger than the scratch).
  const size_t per = std::min(n, scratch_bytes_ / (size_t(size_) * sizeof(float)));
  float* gathered = scratch_for(size_t(size_) * std::max<size_t>(per, 1) * sizeof(float), "all_reduce");
  count((g - 1) * buf);
  for (size_t off = 0; off < n; off += per) {
    const size_t m = std::min(per, n - off);
    SPARROW_NCCL_CHECK(ncclAllGather(data + off, gathered, m, ncclFloat, comm_, s));
    cuda::k::rank_tree_sum(gathered, m, size_, data + off, m, s);
    SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum");
  }
}

void NcclCommunicator::all_gather(std::span<const std::byte> send, std::byte* recv) {
  const cudaStream_t s = cuda::current_stream();
  if (comm_ == nullptr) return copy_d2d(recv, send.data(), send.size(), s);
  if (send.empty()) return;
  count(double(size_ - 1) * double(send.size()));
  SPARROW_NCCL_CHECK(ncclAllGather(send.data(), recv, send.size(), ncclUint8, comm_, s));
}

void NcclCommunicator::all_gather_host(std::span<const std::byte> send, std::byte* recv) {
  if (send.empty()) return;
  if (comm_ == nullptr) {
    std::memcpy(recv, send.data(), send.size());
    return;
  }
  const cudaStream_t s = cuda::current_stream();
  auto* staged = reinterpret_cast<std::byte*>(scratch_for(size_t(size_ + 1) * send.size(), "all_gather_host"));
  std::byte* mine = staged + size_t(size_) * send.size();
  SPARROW_CUDA_CHECK(cudaMemcpyAsync(mine, send.data(), send.size(), cudaMemcpyHostToDevice, s));
  all_gather({mine, send.size()}, staged);
  SPARROW_CUDA_CHECK(cudaMemcpyAsync(recv, staged, size_t(size_) * send.size(), cudaMemcpyDeviceToHost, s));
  SPARROW_CUDA_CHECK(cudaStreamSynchronize(s));
}

void NcclCommunicator::all_gatherv(std::span<const std::byte> send, std::byte* recv, std::span<const size_t> counts) {
  SPARROW_CHECK(counts.size() == size_t(size_) && counts[size_t(rank_)] == send.size(),
                "all_gatherv: {} counts for {} ranks, or rank {}'s count is not its {} bytes", counts.size(), size_,
                rank_, send.size());
  if (all_equal(counts)) return all_gather(send, recv);  // NCCL's collective beats p2p
  const cudaStream_t s = cuda::current_stream();
  const std::vector<size_t> off = offsets(counts);
  // Zero-byte blocks are skipped on both sides: every rank knows every count.
  NcclGroup group;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (!send.empty()) SPARROW_NCCL_CHECK(ncclSend(send.data(), send.size(), ncclUint8, p, comm_, s));
    if (counts[size_t(p)] > 0) SPARROW_NCCL_CHECK(ncclRecv(recv + off[size_t(p)], counts[size_t(p)], ncclUint8, p, comm_, s));
    count(double(counts[size_t(p)]));
  }
  group.end();
  copy_d2d(recv + off[size_t(rank_)], send.data(), send.size(), s);
}

void NcclCommunicator::reduce_scatterv(const float* send, float* recv, std::span<const size_t> counts) {
  SPARROW_CHECK(counts.size() == size_t(size_), "reduce_scatterv: {} counts for {} ranks", counts.size(), size_);
  const cudaStream_t s = cuda::current_stream();
  const std::vector<size_t> off = offsets(counts);
  const size_t mine = counts[size_t(rank_)];
  if (size_ == 1) return copy_d2d(recv, send, mine * sizeof(float), s);
  // Either mode: this rank takes in g-1 blocks of its own size.
  count(double(size_ - 1) * double(mine * sizeof(float)));
  if (!exact_) {
    if (all_equal(counts)) {
      if (mine > 0) SPARROW_NCCL_CHECK(ncclReduceScatter(send, recv, mine, ncclFloat, ncclSum, comm_, s));
      return;
    }
    // Uneven blocks: one reduce per owner, fused into one launch by the group.
    NcclGroup group;
    for (int r = 0; r < size_; ++r)
      if (counts[size_t(r)] > 0)
        SPARROW_NCCL_CHECK(ncclReduce(send + off[size_t(r)], recv, counts[size_t(r)], ncclFloat, ncclSum, r, comm_, s));
    group.end();
    return;
  }
  // Exact: gather every rank's copy of my block (rank order) into scratch, then the tree.
  float* gathered = scratch_for(size_t(size_) * mine * sizeof(float), "reduce_scatterv");
  NcclGroup group;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (counts[size_t(p)] > 0) SPARROW_NCCL_CHECK(ncclSend(send + off[size_t(p)], counts[size_t(p)], ncclFloat, p, comm_, s));
    if (mine > 0) SPARROW_NCCL_CHECK(ncclRecv(gathered + size_t(p) * mine, mine, ncclFloat, p, comm_, s));
  }
  group.end();
  copy_d2d(gathered + size_t(rank_) * mine, send + off[size_t(rank_)], mine * sizeof(float), s);
  cuda::k::rank_tree_sum(gathered, mine, size_, recv, mine, s);
  SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum");
}

void NcclCommunicator::all_to_all_v(const std::byte* send, std::span<const size_t> send_counts, std::byte* recv,
                                    std::span<const size_t> recv_counts) {
  SPARROW_CHECK(send_counts.size() == size_t(size_) && recv_counts.size() == size_t(size_), "all_to_all_v counts");
  // Only the block to itself can be checked locally: a peer's count arrives with its data.
  SPARROW_CHECK(send_counts[size_t(rank_)] == recv_counts[size_t(rank_)],
                "all_to_all_v: rank {} sends itself {} bytes but expects {}", rank_, send_counts[size_t(rank_)],
                recv_counts[size_t(rank_)]);
  const cudaStream_t s = cuda::current_stream();
  const std::vector<size_t> soff = offsets(send_counts), roff = offsets(recv_counts);
  if (comm_ != nullptr) {
    NcclGroup group;
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      const size_t out = send_counts[size_t(p)], in = recv_counts[size_t(p)];
      if (out > 0) SPARROW_NCCL_CHECK(ncclSend(send + soff[size_t(p)], out, ncclUint8, p, comm_, s));
      if (in > 0) SPARROW_NCCL_CHECK(ncclRecv(recv + roff[size_t(p)], in, ncclUint8, p, comm_, s));
      count(double(in));
    }
    group.end();
  }
  copy_d2d(recv + roff[size_t(rank_)], send + soff[size_t(rank_)], send_counts[size_t(rank_)], s);
}

void NcclCommunicator::broadcast(std::byte* data, size_t bytes, int root) {
  SPARROW_CHECK(root >= 0 && root < size_, "broadcast root {} of {} ranks", root, size_);
  if (comm_ == nullptr || bytes == 0) return;
  if (rank_ != root) count(double(bytes));
  SPARROW_NCCL_CHECK(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, cuda::current_stream()));
}

void NcclCommunicator::barrier() {
  const cudaStream_t s = cuda::current_stream();
  if (comm_ != nullptr) {
    // No rank's one-float reduction can finish before every rank has posted it.
    float* flag = static_cast<float*>(buffer_.data());
    SPARROW_NCCL_CHECK(ncclAllReduce(flag, flag, 1, ncclFloat, ncclSum, comm_, s));
  }
  SPARROW_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace sparrow
