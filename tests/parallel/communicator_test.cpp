// Every collective of the in-process backend, on 1..4 (and 3: not a power of two) ranks,
// with uneven and zero counts, and disjoint sub-groups running concurrently.
#include "sparrow/parallel/communicator.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <span>
#include <thread>

namespace sparrow {
namespace {

void run_ranks(int n, const std::function<void(int, Communicator&)>& body) {
  InProcessWorld world(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      auto c = world.communicator(r);
      body(r, *c);
    });
  for (auto& t : threads) t.join();
}

float value(int rank, size_t i) { return 1.0f / float(3 + rank) + float(i) * 1e-3f * float(rank + 1); }

class CommTest : public ::testing::TestWithParam<int> {};

TEST_P(CommTest, AllReduceSumsInTreeOrderOnEveryRank) {
  const int n = GetParam();
  // Small (every rank sums everything) and large (each rank sums a slice; an odd length so
  // the slices are uneven).
  for (size_t len : {size_t(1000), size_t(70001)}) {
    std::vector<std::vector<float>> out(static_cast<size_t>(n));
    run_ranks(n, [&](int r, Communicator& c) {
      std::vector<float> v(len);
      for (size_t i = 0; i < len; ++i) v[i] = value(r, i);
      c.all_reduce(v.data(), len);
      out[size_t(r)] = v;
    });
    for (size_t i = 0; i < len; ++i) {
      std::vector<float> t;
      for (int r = 0; r < n; ++r) t.push_back(value(r, i));
      for (size_t w = 1; w < t.size(); w *= 2)
        for (size_t k = 0; k + w < t.size(); k += 2 * w) t[k] = t[k] + t[k + w];
      for (int r = 0; r < n; ++r)
        ASSERT_EQ(out[size_t(r)][i], t[0]) << "rank " << r << " element " << i << " of " << len;
    }
  }
}

TEST_P(CommTest, AllGathervWithUnevenAndZeroCounts) {
  const int n = GetParam();
  std::vector<size_t> counts;
  for (int r = 0; r < n; ++r) counts.push_back(size_t(r % 2 == 1 ? 0 : 3 + r));  // odd ranks send nothing
  size_t total = 0;
  for (size_t c : counts) total += c;
  run_ranks(n, [&](int r, Communicator& c) {
    std::vector<std::byte> send(counts[size_t(r)]);
    for (size_t i = 0; i < send.size(); ++i) send[i] = std::byte(r * 16 + int(i));
    std::vector<std::byte> recv(total, std::byte(0xee));
    c.all_gatherv(send, recv.data(), counts);
    size_t off = 0;
    for (int s = 0; s < n; ++s)
      for (size_t i = 0; i < counts[size_t(s)]; ++i) EXPECT_EQ(recv[off++], std::byte(s * 16 + int(i)));
  });
}

TEST_P(CommTest, ReduceScattervGivesEachRankItsSummedBlock) {
  const int n = GetParam();
  std::vector<size_t> counts;
  for (int r = 0; r < n; ++r) counts.push_back(size_t(r == 0 ? 0 : 2 * r + 1));
  size_t total = 0;
  for (size_t c : counts) total += c;
  run_ranks(n, [&](int r, Communicator& c) {
    std::vector<float> send(total);
    for (size_t i = 0; i < total; ++i) send[i] = value(r, i);
    std::vector<float> recv(counts[size_t(r)], -1.f);
    c.reduce_scatterv(send.data(), recv.data(), counts);
    size_t off = 0;
    for (int k = 0; k < r; ++k) off += counts[size_t(k)];
    for (size_t i = 0; i < recv.size(); ++i) {
      std::vector<float> t;
      for (int s = 0; s < n; ++s) t.push_back(value(s, off + i));
      for (size_t w = 1; w < t.size(); w *= 2)
        for (size_t k = 0; k + w < t.size(); k += 2 * w) t[k] = t[k] + t[k + w];
      EXPECT_EQ(recv[i], t[0]);
    }
  });
}

TEST_P(CommTest, AllToAllVRoutesEveryBlock) {
  const int n = GetParam();
  // Rank s sends (s + d) % 3 bytes to rank d, each byte tagged (s, d, i).
  auto count = [](int s, int d) { return size_t((s + d) % 3); };
  run_ranks(n, [&](int r, Communicator& c) {
    std::vector<size_t> sc, rc;
    std::vector<std::byte> send;
    for (int d = 0; d < n; ++d) {
      sc.push_back(count(r, d));
      rc.push_back(count(d, r));
      for (size_t i = 0; i < count(r, d); ++i) send.push_back(std::byte(r * 64 + d * 8 + int(i)));
    }
    size_t total = 0;
    for (size_t x : rc) total += x;
    std::vector<std::byte> recv(total);
    c.all_to_all_v(send.data(), sc, recv.data(), rc);
    size_t off = 0;
    for (int s = 0; s < n; ++s)
      for (size_t i = 0; i < count(s, r); ++i) EXPECT_EQ(recv[off++], std::byte(s * 64 + r * 8 + int(i)));
  });
}

TEST_P(CommTest, BroadcastAndBarrier) {
  const int n = GetParam();
  run_ranks(n, [&](int r, Communicator& c) {
    for (int root = 0; root < n; ++root) {
      int64_t v = r == root ? 1000 + root : -1;
      c.broadcast(reinterpret_cast<std::byte*>(&v), sizeof v, root);
      EXPECT_EQ(v, 1000 + root);
      c.barrier();
    }
  });
}

// The host-memory gather of control values (token counts, all-to-all sizes): every
// backend's; here the in-process one. LayerCommunicator::exchange_counts builds on it.
TEST_P(CommTest, AllGatherHostGathersEveryRanksCounts) {
  const int n = GetParam();
  run_ranks(n, [&](int r, Communicator& c) {
    std::vector<size_t> mine(static_cast<size_t>(n));
    for (int d = 0; d < n; ++d) mine[size_t(d)] = size_t(100 * r + d);  // rows r sends to d
    std::vector<size_t> all(size_t(n * n));
    c.all_gather_host(std::as_bytes(std::span<const size_t>(mine)), reinterpret_cast<std::byte*>(all.data()));
    for (int q = 0; q < n; ++q)
      for (int d = 0; d < n; ++d) EXPECT_EQ(all[size_t(q * n + d)], size_t(100 * q + d)) << "rank " << r;
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, CommTest, ::testing::Values(1, 2, 3, 4, 5, 8));

TEST(Comm, DisjointSubgroupsRunConcurrently) {
  InProcessWorld world(4);
  std::vector<float> results(4);
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r)
    threads.emplace_back([&, r] {
      const std::vector<int> mine = r < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3};
      auto g = world.group(mine, r);
      EXPECT_EQ(g->size(), 2);
      EXPECT_EQ(g->rank(), r % 2);
      float v = float(r + 1);
      for (int i = 0; i < 100; ++i) {
        float x = v;
        g->all_reduce(&x, 1);
        results[size_t(r)] = x;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(results[0], 3.f);
  EXPECT_EQ(results[1], 3.f);
  EXPECT_EQ(results[2], 7.f);
  EXPECT_EQ(results[3], 7.f);
}

}  // namespace
}  // namespace sparrow
