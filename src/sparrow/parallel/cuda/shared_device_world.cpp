#include "sparrow/parallel/cuda/shared_device_world.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "sparrow/core/cuda/device.h"
#include "sparrow/core/error.h"
#include "sparrow/kernels/cuda/rank_tree_sum.h"

namespace sparrow {

// A group's exchange: each member posts its buffer, all meet, each reads what it needs from
// the others (and waits for its own stream), all meet again before any buffer is reused.
struct SharedDeviceWorld::Group {
  explicit Group(int n) : sync(n), ptr(size_t(n)), counts(size_t(n)) {}
  std::barrier<> sync;
  std::vector<const void*> ptr;
  std::vector<const size_t*> counts;
};

struct SharedDeviceWorld::State {
  int size = 1;
  size_t scratch_bytes = 0;
  std::atomic<uint64_t> bytes{0};
  std::mutex mu;
  std::map<std::vector<int>, std::unique_ptr<Group>> groups;
  Group& group(const std::vector<int>& ranks) {
    std::lock_guard<std::mutex> lock(mu);
    auto& g = groups[ranks];
    if (!g) g = std::make_unique<Group>(int(ranks.size()));
    return *g;
  }
};

namespace {

void d2d(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes > 0 && dst != src) SPARROW_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

class SharedDeviceCommunicator final : public Communicator {
 public:
  SharedDeviceCommunicator(SharedDeviceWorld::Group& g, int rank, int size, size_t scratch_bytes,
                           std::atomic<uint64_t>& bytes)
      : g_(g), rank_(rank), size_(size), bytes_(bytes) {
    if (size > 1) scratch_ = cuda::DeviceBuffer(scratch_bytes);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(float* data, size_t n) override {
    if (size_ == 1 || n == 0) return;
    // In slices of what the scratch holds (the tree is elementwise: same bits).
    const size_t per = std::min(n, scratch_.nbytes() / (size_t(size_) * sizeof(float)));
    float* gathered = scratch(size_t(size_) * std::max<size_t>(per, 1) * sizeof(float));
    for (size_t off = 0; off < n; off += per) {
      const size_t m = std::min(per, n - off);
      post(data + off);
      for (int r = 0; r < size_; ++r) d2d(gathered + size_t(r) * m, g_.ptr[size_t(r)], m * sizeof(float), stream());
      finish(double(size_ - 1) * double(m * sizeof(float)));  // everyone has read the slice
      cuda::k::rank_tree_sum(gathered, m, size_, data + off, m, stream());
      SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum");
    }
    wait();
  }

  void all_gather(std::span<const std::byte> send, std::byte* recv) override {
    std::vector<size_t> c(size_t(size_), send.size());
    all_gatherv(send, recv, c);
  }

  void all_gatherv(std::span<const std::byte> send, std::byte* recv, std::span<const size_t> counts) override {
    SPARROW_CHECK(counts.size() == size_t(size_) && counts[size_t(rank_)] == send.size(), "all_gatherv counts");
    post(send.data());
    size_t off = 0, in = 0;
    for (int r = 0; r < size_; ++r) {
      d2d(recv + off, g_.ptr[size_t(r)], counts[size_t(r)], stream());
      if (r != rank_) in += counts[size_t(r)];
      off += counts[size_t(r)];
    }
    finish(double(in));
  }

  void reduce_scatterv(const float* send, float* recv, std::span<const size_t> counts) override {
    SPARROW_CHECK(counts.size() == size_t(size_), "reduce_scatterv counts");
    size_t mine_off = 0;
    for (int r = 0; r < rank_; ++r) mine_off += counts[size_t(r)];
    const size_t mine = counts[size_t(rank_)];
    float* gathered = scratch(size_t(size_) * mine * sizeof(float));
    post(send);
    for (int r = 0; r < size_; ++r)
      d2d(gathered + size_t(r) * mine, static_cast<const float*>(g_.ptr[size_t(r)]) + mine_off, mine * sizeof(float), stream());
    finish(double(size_ - 1) * double(mine * sizeof(float)));
    cuda::k::rank_tree_sum(gathered, mine, size_, recv, mine, stream());
    SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum");
    wait();
  }

  void all_to_all_v(const std::byte* send, std::span<const size_t> send_counts, std::byte* recv,
                    std::span<const size_t> recv_counts) override {
    SPARROW_CHECK(send_counts.size() == size_t(size_) && recv_counts.size() == size_t(size_), "all_to_all_v counts");
    g_.counts[size_t(rank_)] = send_counts.data();
    post(send);
    size_t off = 0, in = 0;
    for (int r = 0; r < size_; ++r) {
      const size_t* sc = g_.counts[size_t(r)];
      size_t src_off = 0;
      for (int k = 0; k < rank_; ++k) src_off += sc[k];
      SPARROW_CHECK(sc[rank_] == recv_counts[size_t(r)], "all_to_all_v: rank {} sends {} bytes to {}, which expects {}", r,
                    sc[rank_], rank_, recv_counts[size_t(r)]);
      d2d(recv + off, static_cast<const std::byte*>(g_.ptr[size_t(r)]) + src_off, sc[rank_], stream());
      if (r != rank_) in += sc[rank_];
      off += recv_counts[size_t(r)];
    }
    finish(double(in));
  }

  void broadcast(std::byte* data, size_t bytes, int root) override {
    SPARROW_CHECK(root >= 0 && root < size_, "broadcast root {} of {} ranks", root, size_);
    post(data);
    if (rank_ != root) d2d(data, g_.ptr[size_t(root)], bytes, stream());
    finish(rank_ != root ? double(bytes) : 0.0);
  }

  void barrier() override {
    wait();
    g_.sync.arrive_and_wait();
  }

  void all_gather_host(std::span<const std::byte> send, std::byte* recv) override {
    g_.ptr[size_t(rank_)] = send.data();
    g_.sync.arrive_and_wait();
    for (int r = 0; r < size_; ++r) std::memcpy(recv + size_t(r) * send.size(), g_.ptr[size_t(r)], send.size());
    g_.sync.arrive_and_wait();
  }

 private:
  static cudaStream_t stream() { return cuda::current_stream(); }
  void wait() const { SPARROW_CUDA_CHECK(cudaStreamSynchronize(stream())); }
  // My buffer is ready (my stream has finished writing it) and visible to the peers.
  void post(const void* p) {
    wait();
    g_.ptr[size_t(rank_)] = p;
    g_.sync.arrive_and_wait();
  }
  // My reads are done; after the barrier every peer's are too, so buffers may be reused.
  void finish(double bytes_in) {
    wait();
    bytes_.fetch_add(uint64_t(bytes_in), std::memory_order_relaxed);
    g_.sync.arrive_and_wait();
  }
  float* scratch(size_t bytes) const {
    SPARROW_CHECK(bytes <= scratch_.nbytes(), "SharedDeviceWorld: a collective needs {} bytes of scratch, {} given", bytes,
                  scratch_.nbytes());
    return static_cast<float*>(scratch_.data());
  }

  SharedDeviceWorld::Group& g_;
  int rank_, size_;
  std::atomic<uint64_t>& bytes_;
  cuda::DeviceBuffer scratch_;
};

}  // namespace

SharedDeviceWorld::SharedDeviceWorld(int size, size_t scratch_bytes) : state_(std::make_unique<State>()) {
  SPARROW_REQUIRE(size >= 1 && size <= 64, "world size {} must be in [1, 64]", size);
  state_->size = size;
  state_->scratch_bytes = scratch_bytes;
}
SharedDeviceWorld::~SharedDeviceWorld() = default;
int SharedDeviceWorld::size() const { return state_->size; }
uint64_t SharedDeviceWorld::bytes_moved() const { return state_->bytes.load(); }

std::unique_ptr<Communicator> SharedDeviceWorld::communicator(int rank) { return group(all_ranks(state_->size), rank); }

std::unique_ptr<Communicator> SharedDeviceWorld::group(std::span<const int> ranks, int rank) {
  const int index = group_index(ranks, rank);
  return std::make_unique<SharedDeviceCommunicator>(state_->group(std::vector<int>(ranks.begin(), ranks.end())), index,
                                                    int(ranks.size()), state_->scratch_bytes, state_->bytes);
}

}  // namespace sparrow
