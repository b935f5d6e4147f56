#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>

#include "sparrow/core/error.h"
#include "sparrow/parallel/communicator.h"

namespace sparrow {

// Exchange state of one group: a slot per member for the pointers of the current call, and a
// barrier. Two barrier phases per collective: after posting (everyone's inputs are visible),
// after reading (nobody frees or reuses a buffer a peer may still read).
struct InProcessWorld::Group {
  Group(int n, std::atomic<uint64_t>* bytes) : bytes_moved(bytes), members(n), sync(n), send(size_t(n)), recv(size_t(n)), counts(size_t(n)), counts2(size_t(n)) {}
  std::atomic<uint64_t>* bytes_moved;
  int members;
  std::barrier<> sync;
  std::vector<const void*> send;
  std::vector<void*> recv;
  std::vector<const size_t*> counts, counts2;
};

struct InProcessWorld::State {
  int size;
  std::atomic<uint64_t> bytes_moved{0};
  std::mutex mu;
  std::map<std::vector<int>, std::unique_ptr<Group>> groups;
  Group& group(const std::vector<int>& ranks) {
    std::lock_guard<std::mutex> lock(mu);
    auto& g = groups[ranks];
    if (!g) g = std::make_unique<Group>(int(ranks.size()), &bytes_moved);
    return *g;
  }
};

namespace {

// Sum of `n` floats from each of `srcs` (rank order) into dst, combining ranks by a binary
// tree: pairs (0,1), (2,3), ... then pairs of pairs. Elementwise, so any slicing of the
// element range gives the same bits. Runs over blocks of elements, one tree level at a
// time (the first level reads the ranks' buffers pairwise, later ones a small scratch), so
// every loop is a plain vectorizable a[i] + b[i].
void tree_sum(const std::vector<const float*>& srcs, float* dst, size_t n) {
  const size_t r = srcs.size();
  if (r == 1) {
    if (dst != srcs[0]) std::memmove(dst, srcs[0], n * sizeof(float));
    return;
  }
  constexpr size_t kBlock = 256;
  float buf[32][kBlock];  // (r + 1) / 2 <= 32 pair sums (r <= 64)
  const size_t pairs = (r + 1) / 2;
  for (size_t i0 = 0; i0 < n; i0 += kBlock) {
    const size_t m = std::min(kBlock, n - i0);
    for (size_t k = 0; k < r; k += 2) {  // ranks (k, k + 1), or k alone when it is last
      float* b = buf[k / 2];
      const float* a = srcs[k] + i0;
      if (k + 1 < r) {
        const float* c = srcs[k + 1] + i0;
        for (size_t i = 0; i < m; ++i) b[i] = a[i] + c[i];
      } else {
        std::memcpy(b, a, m * sizeof(float));
      }
    }
    // Rank width 2w is pair width w: pair j absorbs pair j + w when rank 2 (j + w) exists.
    for (size_t w = 1; w < pairs; w *= 2)
      for (size_t j = 0; j + w < pairs; j += 2 * w)
        for (size_t i = 0; i < m; ++i) buf[j][i] = buf[j][i] + buf[j + w][i];
    std::memcpy(dst + i0, buf[0], m * sizeof(float));
  }
}

// All-reduces at least this many floats split the summing across the ranks (each sums a
// slice, then copies everyone's): one more barrier, 1 / size of the adds per rank.
constexpr size_t kSliceAllReduce = size_t(1) << 15;

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(InProcessWorld::Group& g, int rank, int size) : g_(g), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void count(double bytes) { g_.bytes_moved->fetch_add(uint64_t(bytes), std::memory_order_relaxed); }

  void all_reduce(float* data, size_t n) override {
    count(2.0 * double(size_ - 1) / double(size_) * double(n * sizeof(float)));
    g_.send[size_t(rank_)] = data;
    g_.sync.arrive_and_wait();
    // Results go to a private buffer first: peers may still be reading `data` until the
    // second barrier. Small buffers: every rank sums all of it (two barriers). Large ones:
    // each rank sums its slice, then copies every rank's slice from its peer's buffer (ranks
    // are threads sharing cores, so this divides the adds by the group size).
    std::vector<const float*> srcs(static_cast<size_t>(size_));
    const bool sliced = size_ > 1 && n >= kSliceAllReduce;
    const size_t b = sliced ? n * size_t(rank_) / size_t(size_) : 0;
    const size_t e = sliced ? n * size_t(rank_ + 1) / size_t(size_) : n;
    for (int r = 0; r < size_; ++r) srcs[size_t(r)] = static_cast<const float*>(g_.send[size_t(r)]) + b;
    scratch_.resize(e - b);
    tree_sum(srcs, scratch_.data(), e - b);
    g_.recv[size_t(rank_)] = scratch_.data();
    g_.sync.arrive_and_wait();
    if (!sliced) {
      std::memcpy(data, scratch_.data(), n * sizeof(float));
      return;
    }
    for (int r = 0; r < size_; ++r) {
      const size_t rb = n * size_t(r) / size_t(size_), re = n * size_t(r + 1) / size_t(size_);
      std::memcpy(data + rb, g_.recv[size_t(r)], (re - rb) * sizeof(float));
    }
    g_.sync.arrive_and_wait();  // peers have copied my slice: scratch_ may be reused
  }

  void all_gather(std::span<const std::byte> send, std::byte* recv) override {
    std::vector<size_t> c(size_t(size_), send.size());
    all_gatherv(send, recv, c);
  }

  void all_gatherv(std::span<const std::byte> send, std::byte* recv, std::span<const size_t> counts) override {
    SPARROW_CHECK(counts.size() == size_t(size_) && counts[size_t(rank_)] == send.size(), "all_gatherv counts");
    g_.send[size_t(rank_)] = send.data();
    g_.sync.arrive_and_wait();
    size_t off = 0;
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) count(double(counts[size_t(r)]));
      if (counts[size_t(r)]) std::memcpy(recv + off, g_.send[size_t(r)], counts[size_t(r)]);
      off += counts[size_t(r)];
    }
    g_.sync.arrive_and_wait();
  }

  void reduce_scatterv(const float* send, float* recv, std::span<const size_t> counts) override {
    SPARROW_CHECK(counts.size() == size_t(size_), "reduce_scatterv counts");
    size_t my_off = 0;
    for (int r = 0; r < rank_; ++r) my_off += counts[size_t(r)];
    count(double(size_ - 1) / double(size_) * double(counts[size_t(rank_)] * sizeof(float)) * double(size_));
    g_.send[size_t(rank_)] = send;
    g_.sync.arrive_and_wait();
    std::vector<const float*> srcs(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) srcs[size_t(r)] = static_cast<const float*>(g_.send[size_t(r)]) + my_off;
    scratch_.resize(counts[size_t(rank_)]);
    tree_sum(srcs, scratch_.data(), counts[size_t(rank_)]);
    g_.sync.arrive_and_wait();
    if (!scratch_.empty()) std::memcpy(recv, scratch_.data(), scratch_.size() * sizeof(float));
  }

  void all_to_all_v(const std::byte* send, std::span<const size_t> send_counts, std::byte* recv,
                    std::span<const size_t> recv_counts) override {
    SPARROW_CHECK(send_counts.size() == size_t(size_) && recv_counts.size() == size_t(size_), "all_to_all_v counts");
    g_.send[size_t(rank_)] = send;
    g_.counts[size_t(rank_)] = send_counts.data();
    g_.sync.arrive_and_wait();
    size_t off = 0;
    for (int r = 0; r < size_; ++r) {
      // Rank r's block for me starts after its blocks for ranks < me.
      const size_t* sc = g_.counts[size_t(r)];
      size_t src_off = 0;
      for (int k = 0; k < rank_; ++k) src_off += sc[k];
      SPARROW_CHECK(sc[rank_] == recv_counts[size_t(r)], "all_to_all_v: rank {} sends {} bytes to {}, which expects {}", r,
                    sc[rank_], rank_, recv_counts[size_t(r)]);
      if (r != rank_) count(double(sc[rank_]));
      if (sc[rank_]) std::memcpy(recv + off, static_cast<const std::byte*>(g_.send[size_t(r)]) + src_off, sc[rank_]);
      off += recv_counts[size_t(r)];
    }
    g_.sync.arrive_and_wait();
  }

  void broadcast(std::byte* data, size_t bytes, int root) override {
    g_.send[size_t(rank_)] = data;
    g_.sync.arrive_and_wait();
    if (rank_ != root && bytes) std::memcpy(data, g_.send[size_t(root)], bytes);
    g_.sync.arrive_and_wait();
  }

  void barrier() override { g_.sync.arrive_and_wait(); }

 private:
  InProcessWorld::Group& g_;
  int rank_, size_;
  std::vector<float> scratch_;
};

}  // namespace

InProcessWorld::InProcessWorld(int size) : state_(std::make_unique<State>()) {
  SPARROW_REQUIRE(size >= 1 && size <= 64, "world size {} must be in [1, 64]", size);
  state_->size = size;
}
InProcessWorld::~InProcessWorld() = default;
int InProcessWorld::size() const { return state_->size; }
uint64_t InProcessWorld::bytes_moved() const { return state_->bytes_moved.load(); }

int group_index(std::span<const int> ranks, int rank) {
  SPARROW_CHECK(!ranks.empty() && std::adjacent_find(ranks.begin(), ranks.end(), std::greater_equal<int>()) == ranks.end(),
                "group ranks must be ascending and distinct");
  const auto it = std::find(ranks.begin(), ranks.end(), rank);
  SPARROW_CHECK(it != ranks.end(), "rank {} is not in the group", rank);
  return int(it - ranks.begin());
}

std::vector<int> all_ranks(int size) {
  std::vector<int> all(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) all[size_t(r)] = r;
  return all;
}

std::unique_ptr<Communicator> InProcessWorld::communicator(int rank) { return group(all_ranks(state_->size), rank); }

std::unique_ptr<Communicator> InProcessWorld::group(std::span<const int> ranks, int rank) {
  const int index = group_index(ranks, rank);
  Group& g = state_->group(std::vector<int>(ranks.begin(), ranks.end()));
  return std::make_unique<InProcessCommunicator>(g, index, int(ranks.size()));
}

}  // namespace sparrow
