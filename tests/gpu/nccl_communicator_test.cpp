// The NCCL backend on GPUs, one thread per GPU. On one GPU (the usual device machine) every
// primitive runs at world size 1, zero counts included, plus groups of one. With two or
// more GPUs: uneven and zero-byte all_gatherv / all_to_all_v, exact-order all_reduce and
// reduce_scatterv bit-identical to the in-process backend on the same inputs (and the fast
// NCCL path within float tolerance), sub-groups split from the world as RankComms builds
// them, the scratch limit, and two "nodes" joined through the TCP rendezvous.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>

#include "nccl_test_util.h"
#include "sparrow/parallel/rank_context.h"
#include "sparrow/parallel/rendezvous.h"

namespace sparrow {
namespace {

using namespace nccl_test;
using cuda::DeviceBuffer;

std::byte pattern(int from, int to, size_t i) { return std::byte((from * 31 + to * 7 + int(i)) & 0xff); }

std::vector<std::byte> bytes_from(int from, int to, size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = pattern(from, to, i);
  return v;
}

NcclCommunicator& nccl(Communicator& c) { return dynamic_cast<NcclCommunicator&>(c); }

// ---- world of one ----------------------------------------------------------------------

void check_every_primitive_alone(Communicator& c) {
  ASSERT_EQ(c.size(), 1);
  ASSERT_EQ(c.rank(), 0);
  // all_reduce of one contribution: unchanged, exact and fast.
  const std::vector<float> v = values(0, 300);
  DeviceBuffer d = upload(v);
  c.all_reduce(static_cast<float*>(d.data()), v.size());
  c.all_reduce(static_cast<float*>(d.data()), 0);
  EXPECT_EQ(download<float>(d.data(), v.size()), v);
  // Gathers: the own block, and nothing at all.
  const std::vector<std::byte> b = bytes_from(0, 0, 77);
  DeviceBuffer src = upload(b), dst = filled(b.size(), std::byte(0xee));
  c.all_gather({static_cast<const std::byte*>(src.data()), b.size()}, static_cast<std::byte*>(dst.data()));
  EXPECT_EQ(download<std::byte>(dst.data(), b.size()), b);
  DeviceBuffer dst2 = filled(b.size(), std::byte(0xee));
  const size_t own[] = {b.size()}, none[] = {0};
  c.all_gatherv({static_cast<const std::byte*>(src.data()), b.size()}, static_cast<std::byte*>(dst2.data()), own);
  EXPECT_EQ(download<std::byte>(dst2.data(), b.size()), b);
  DeviceBuffer untouched = filled(4, std::byte(0xee));
  c.all_gather({static_cast<const std::byte*>(src.data()), 0}, static_cast<std::byte*>(untouched.data()));
  c.all_gatherv({static_cast<const std::byte*>(src.data()), 0}, static_cast<std::byte*>(untouched.data()), none);
  // reduce_scatter(v): the own block copied.
  DeviceBuffer rs = filled(v.size(), 0.0f);
  const size_t all[] = {v.size()};
  c.reduce_scatterv(static_cast<const float*>(d.data()), static_cast<float*>(rs.data()), all);
  EXPECT_EQ(download<float>(rs.data(), v.size()), v);
  DeviceBuffer rs2 = filled(v.size(), 0.0f);
  c.reduce_scatter(static_cast<const float*>(d.data()), static_cast<float*>(rs2.data()), v.size());
  EXPECT_EQ(download<float>(rs2.data(), v.size()), v);
  c.reduce_scatterv(static_cast<const float*>(d.data()), static_cast<float*>(untouched.data()), none);
  // all_to_all_v to itself, and of nothing.
  DeviceBuffer a2a = filled(b.size(), std::byte(0xee));
  c.all_to_all_v(static_cast<const std::byte*>(src.data()), own, static_cast<std::byte*>(a2a.data()), own);
  EXPECT_EQ(download<std::byte>(a2a.data(), b.size()), b);
  c.all_to_all_v(static_cast<const std::byte*>(src.data()), none, static_cast<std::byte*>(untouched.data()), none);
  // broadcast from itself: unchanged; and of nothing.
  c.broadcast(static_cast<std::byte*>(src.data()), b.size(), 0);
  c.broadcast(static_cast<std::byte*>(src.data()), 0, 0);
  EXPECT_EQ(download<std::byte>(src.data(), b.size()), b);
  c.barrier();
  EXPECT_EQ(download<std::byte>(untouched.data(), 4), std::vector<std::byte>(4, std::byte(0xee)));
}

TEST(NcclWorld1, EveryPrimitiveExactAndFast) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  for (bool exact : {true, false}) {
    NcclWorld world(world_options(1, exact));
    run_ranks(world, [&](int, Communicator& c) {
      EXPECT_EQ(nccl(c).exact_order(), exact);
      check_every_primitive_alone(c);
    });
    EXPECT_EQ(world.bytes_moved(), 0u) << "a world of one moves nothing between ranks";
  }
}

TEST(NcclWorld1, GroupOfOneRunsWithoutNccl) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  NcclWorld world(world_options(1));
  run_ranks(world, [&](int r, Communicator&) {
    const int members[] = {0};
    std::unique_ptr<Communicator> g = world.group(members, r);
    EXPECT_EQ(nccl(*g).nccl(), nullptr);
    check_every_primitive_alone(*g);
  });
}

TEST(NcclWorld1, RankCommsFromAOneRankMesh) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  NcclWorld world(world_options(1));
  run_ranks(world, [&](int r, Communicator&) {
    const RankComms rc = RankComms::create(world, Mesh{}, r);
    for (Communicator* c : {rc.world.get(), rc.attn_tp.get(), rc.attn_dp.get(), rc.moe_tp.get()}) EXPECT_EQ(c->size(), 1);
    check_every_primitive_alone(*rc.world);
    check_every_primitive_alone(*rc.moe_tp);
  });
}

// ---- several GPUs ----------------------------------------------------------------------

int ranks_or_skip(int at_least = 2) {
  const int n = std::min(gpu_count(), 8);
  return n >= at_least ? n : 0;
}

#define NEED_GPUS(k)                                                                       \
  const int n = ranks_or_skip(k);                                                          \
  if (n == 0) GTEST_SKIP() << "needs " << (k) << " GPUs, found " << gpu_count()

TEST(NcclMultiGpu, AllGathervWithUnevenAndZeroCounts) {
  NEED_GPUS(2);
  std::vector<size_t> counts;
  for (int r = 0; r < n; ++r) counts.push_back(r % 2 == 1 ? 0 : 1000 * size_t(r) + 13);  // odd ranks send nothing
  size_t total = 0;
  for (size_t c : counts) total += c;
  NcclWorld world(world_options(n));
  run_ranks(world, [&](int r, Communicator& c) {
    const std::vector<std::byte> mine = bytes_from(r, 0, counts[size_t(r)]);
    DeviceBuffer send = upload(mine), recv = filled(total, std::byte(0xee));
    c.all_gatherv({static_cast<const std::byte*>(send.data()), mine.size()}, static_cast<std::byte*>(recv.data()), counts);
    const std::vector<std::byte> got = download<std::byte>(recv.data(), total);
    size_t off = 0;
    for (int s = 0; s < n; ++s) {
      const std::vector<std::byte> want = bytes_from(s, 0, counts[size_t(s)]);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + ptrdiff_t(off))) << "rank " << r << " block " << s;
      off += counts[size_t(s)];
    }
  });
}

TEST(NcclMultiGpu, AllToAllVUnevenWithAZeroTokenRank) {
  NEED_GPUS(2);
  // Rank 0 has no tokens: it sends nothing (but still receives); others send uneven,
  // sometimes empty, blocks.
  auto sends = [](int from, int to) -> size_t { return from == 0 ? 0 : size_t((from * 7 + to * 3) % 5) * 97; };
  NcclWorld world(world_options(n));
  run_ranks(world, [&](int r, Communicator& c) {
    std::vector<size_t> sc, rc;
    std::vector<std::byte> out;
    for (int p = 0; p < n; ++p) {
      sc.push_back(sends(r, p));
      rc.push_back(sends(p, r));
      const std::vector<std::byte> blk = bytes_from(r, p, sends(r, p));
      out.insert(out.end(), blk.begin(), blk.end());
    }
    size_t in_total = 0;
    for (size_t x : rc) in_total += x;
    DeviceBuffer send = upload(out), recv = filled(in_total, std::byte(0xee));
    c.all_to_all_v(static_cast<const std::byte*>(send.data()), sc, static_cast<std::byte*>(recv.data()), rc);
    const std::vector<std::byte> got = download<std::byte>(recv.data(), in_total);
    size_t off = 0;
    for (int p = 0; p < n; ++p) {
      const std::vector<std::byte> want = bytes_from(p, r, rc[size_t(p)]);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + ptrdiff_t(off))) << "rank " << r << " from " << p;
      off += rc[size_t(p)];
    }
  });
}

// The in-process backend's results on the same inputs: the reference of the exact mode.
std::vector<std::vector<float>> inprocess(int n, const std::function<void(int, Communicator&, std::vector<float>&)>& op) {
  InProcessWorld world(n);
  std::vector<std::vector<float>> out(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      auto c = world.communicator(r);
      op(r, *c, out[size_t(r)]);
    });
  for (auto& t : threads) t.join();
  return out;
}

// |got - exact sum| within fp32 accumulation error of the magnitudes summed; inputs[r]
// is rank r's input, of which got covers [offset, offset + got.size()).
void expect_close_to_sum(const std::vector<float>& got, const std::vector<std::vector<float>>& inputs, size_t offset,
                         const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i) {
    double sum = 0, mag = 0;
    for (const auto& in : inputs) {
      sum += in[offset + i];
      mag += std::fabs(in[offset + i]);
    }
    ASSERT_NEAR(got[i], sum, 1e-6 * mag + 1e-30) << what << " element " << i;
  }
}

std::vector<std::vector<float>> all_inputs(int n, size_t len, size_t salt) {
  std::vector<std::vector<float>> v;
  for (int r = 0; r < n; ++r) v.push_back(values(r, len, salt));
  return v;
}

TEST(NcclMultiGpu, AllReduceIsTheInProcessTreeBitForBit) {
  NEED_GPUS(2);
  const size_t len = 4099;
  const auto inputs = all_inputs(n, len, 0);
  const auto want = inprocess(n, [&](int r, Communicator& c, std::vector<float>& out) {
    out = values(r, len);
    c.all_reduce(out.data(), len);
  });
  for (bool exact : {true, false}) {
    NcclWorld world(world_options(n, exact));
    run_ranks(world, [&](int r, Communicator& c) {
      DeviceBuffer d = upload(values(r, len));
      c.all_reduce(static_cast<float*>(d.data()), len);
      const std::vector<float> got = download<float>(d.data(), len);
      if (exact)
        EXPECT_EQ(std::memcmp(got.data(), want[size_t(r)].data(), len * sizeof(float)), 0) << "rank " << r;
      else
        expect_close_to_sum(got, inputs, 0, "fast all_reduce");
    });
    // Exact: every rank gathers (n-1) buffers; fast: a ring's 2 (n-1)/n of the buffer.
    const double per_rank = exact ? double(n - 1) * len * 4 : 2.0 * (n - 1) / n * len * 4;
    EXPECT_NEAR(double(world.bytes_moved()), n * per_rank, n) << (exact ? "exact" : "fast");
  }
}

TEST(NcclMultiGpu, ReduceScattervIsTheInProcessTreeBitForBit) {
  NEED_GPUS(2);
  for (bool even : {false, true}) {
    std::vector<size_t> counts;
    for (int r = 0; r < n; ++r) counts.push_back(even ? 512 : (r == 1 ? 0 : 100 * size_t(r) + 7));  // rank 1: nothing
    size_t total = 0;
    for (size_t c : counts) total += c;
    const auto inputs = all_inputs(n, total, 1);
    const auto want = inprocess(n, [&](int r, Communicator& c, std::vector<float>& out) {
      const std::vector<float> in = values(r, total, 1);
      out.assign(counts[size_t(r)], 0.0f);
      c.reduce_scatterv(in.data(), out.data(), counts);
    });
    for (bool exact : {true, false}) {
      NcclWorld world(world_options(n, exact));
      run_ranks(world, [&](int r, Communicator& c) {
        const size_t mine = counts[size_t(r)];
        DeviceBuffer send = upload(values(r, total, 1)), recv = filled(mine, std::nanf(""));
        c.reduce_scatterv(static_cast<const float*>(send.data()), static_cast<float*>(recv.data()), counts);
        const std::vector<float> got = download<float>(recv.data(), mine);
        size_t off = 0;
        for (int s = 0; s < r; ++s) off += counts[size_t(s)];
        if (exact)
          EXPECT_EQ(std::memcmp(got.data(), want[size_t(r)].data(), mine * sizeof(float)), 0) << "rank " << r;
        else
          expect_close_to_sum(got, inputs, off, "fast reduce_scatterv");
      });
    }
  }
}

TEST(NcclMultiGpu, BroadcastAndBarrier) {
  NEED_GPUS(2);
  NcclWorld world(world_options(n));
  run_ranks(world, [&](int r, Communicator& c) {
    const int root = n - 1;
    DeviceBuffer d = upload(bytes_from(r, 0, 1000));
    c.broadcast(static_cast<std::byte*>(d.data()), 1000, root);
    c.barrier();
    EXPECT_EQ(download<std::byte>(d.data(), 1000), bytes_from(root, 0, 1000)) << "rank " << r;
  });
}

TEST(NcclMultiGpu, TooLittleScratchSlicesTheAllReduceAndThrowsElsewhere) {
  NEED_GPUS(2);
  NcclWorld world(world_options(n, true, 1024));
  run_ranks(world, [&](int r, Communicator& c) {
    // An exact all-reduce larger than the scratch (n * 4096 bytes of 1024) runs in slices.
    DeviceBuffer d = filled(1024, 1.0f);
    c.all_reduce(static_cast<float*>(d.data()), 1024);
    const std::vector<float> got = download<float>(d.data(), 1024);
    EXPECT_EQ(got.front(), float(n));
    EXPECT_EQ(got.back(), float(n));
    // reduce_scatterv gathers its whole block: too little scratch throws naming the size.
    DeviceBuffer big = filled(size_t(n) * 1024, 1.0f), out = filled(1024, 0.0f);
    try {
      c.reduce_scatter(static_cast<const float*>(big.data()), static_cast<float*>(out.data()), 1024);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("needs " + std::to_string(n * 4096) + " bytes of device scratch"), std::string::npos) << m;
      EXPECT_NE(m.find("has 1024"), std::string::npos) << m;
    }
    // Growing it at set-up makes the same call work.
    nccl(c).reserve_scratch(size_t(n) * 4096);
    c.reduce_scatter(static_cast<const float*>(big.data()), static_cast<float*>(out.data()), 1024);
    EXPECT_EQ(download<float>(out.data(), 1)[0], float(n)) << "rank " << r;
  });
}

// Host tree over the members' inputs (the Communicator's contract, written out).
std::vector<float> host_tree(const std::vector<int>& members, size_t len) {
  std::vector<float> out(len);
  for (size_t i = 0; i < len; ++i) {
    std::vector<float> t;
    for (int m : members) t.push_back(value(m, i));
    for (size_t w = 1; w < t.size(); w *= 2)
      for (size_t k = 0; k + w < t.size(); k += 2 * w) t[k] = t[k] + t[k + w];
    out[i] = t[0];
  }
  return out;
}

TEST(NcclMultiGpu, SubGroupsOfTheMeshBySplit) {
  NEED_GPUS(2);
  const int world_size = n - n % 2;  // attention TP 2 needs an even world
  // Attention TP 2 (pairs), DP over the pairs (same attention-TP rank: interleaved), and
  // the MoE groups: two expert groups on 2 GPUs (MoE TP of one: groups without NCCL),
  // one expert group over everything on more.
  Mesh mesh;
  mesh.world = world_size;
  mesh.attn_tp = 2;
  mesh.attn_dp = world_size / 2;
  mesh.moe_ep = world_size == 2 ? 2 : 1;
  mesh.moe_tp = world_size / mesh.moe_ep;
  NcclWorld world(world_options(world_size));
  const size_t len = 257;
  run_ranks(world, [&](int r, Communicator&) {
    const RankComms rc = RankComms::create(world, mesh, r);
    std::vector<int> dp_peers;
    for (int d = 0; d < mesh.attn_dp; ++d) dp_peers.push_back(d * mesh.attn_tp + mesh.attn_tp_rank(r));
    const std::pair<Communicator*, std::vector<int>> groups[] = {
        {rc.world.get(), mesh.world_group()},
        {rc.attn_tp.get(), mesh.attn_tp_group(r)},
        {rc.attn_dp.get(), dp_peers},
        {rc.moe_tp.get(), mesh.moe_tp_group(r)},
    };
    for (const auto& [c, members] : groups) {
      ASSERT_EQ(c->size(), int(members.size()));
      ASSERT_EQ(members[size_t(c->rank())], r);
      DeviceBuffer d = upload(values(r, len));
      c->all_reduce(static_cast<float*>(d.data()), len);
      const std::vector<float> got = download<float>(d.data(), len), want = host_tree(members, len);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), len * sizeof(float)), 0)
          << "rank " << r << " in a group of " << members.size() << " from " << members.front();
    }
  });
}

TEST(NcclMultiGpu, TwoNodesJoinThroughTheRendezvous) {
  NEED_GPUS(2);
  // Two NcclWorlds in one process stand for two nodes of one GPU each; they meet only
  // through the TCP rendezvous on localhost.
  const int port = RendezvousServer(0).port();
  const size_t len = 1000;
  std::vector<std::vector<float>> got(2);
  std::vector<std::exception_ptr> errors(2);
  std::vector<std::thread> nodes;
  for (int node = 0; node < 2; ++node)
    nodes.emplace_back([&, node] {
      try {
        NcclWorldOptions o = world_options(2);
        o.nnodes = 2;
        o.node_rank = node;
        o.init_addr = "127.0.0.1:" + std::to_string(port);
        o.devices = {node};
        o.rendezvous_timeout = std::chrono::seconds(60);
        NcclWorld world(o);
        EXPECT_EQ(world.local_size(), 1);
        EXPECT_EQ(world.first_rank(), node);
        run_ranks(world, [&](int r, Communicator& c) {
          DeviceBuffer d = upload(values(r, len));
          c.all_reduce(static_cast<float*>(d.data()), len);
          got[size_t(node)] = download<float>(d.data(), len);
        });
      } catch (...) {
        errors[size_t(node)] = std::current_exception();
      }
    });
  for (auto& t : nodes) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  const std::vector<float> want = host_tree({0, 1}, len);
  for (int node = 0; node < 2; ++node)
    EXPECT_EQ(std::memcmp(got[size_t(node)].data(), want.data(), len * sizeof(float)), 0) << "node " << node;
}

}  // namespace
}  // namespace sparrow
