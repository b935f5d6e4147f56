// The NCCL backend's reduction kernel alone, on one GPU: for group sizes 1..64 (the
// unrolled small sizes and the general stack form) it must give the in-process backend's
// all-reduce result bit for bit, since both claim the same rank-order tree.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "nccl_test_util.h"
#include "sparrow/parallel/communicator.h"
#include "sparrow/kernels/cuda/rank_tree_sum.h"

namespace sparrow {
namespace {

using namespace nccl_test;

// Every rank's all-reduce result from the in-process backend (they are all the same).
std::vector<float> inprocess_sum(int g, size_t n) {
  InProcessWorld world(g);
  std::vector<float> out;
  std::vector<std::thread> threads;
  for (int r = 0; r < g; ++r)
    threads.emplace_back([&, r] {
      auto c = world.communicator(r);
      std::vector<float> v = values(r, n);
      c->all_reduce(v.data(), n);
      if (r == 0) out = v;
    });
  for (auto& t : threads) t.join();
  return out;
}

TEST(NcclTreeSum, MatchesTheInProcessTreeBitForBit) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  SPARROW_CUDA_CHECK(cudaSetDevice(0));
  const size_t n = 1031;
  for (int g : {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 16, 24, 33, 64}) {
    for (size_t stride : {n, n + 5}) {  // blocks back to back, and padded apart
      std::vector<float> blocks(size_t(g) * stride, 0.0f);
      for (int r = 0; r < g; ++r) {
        const std::vector<float> v = values(r, n);
        std::copy(v.begin(), v.end(), blocks.begin() + ptrdiff_t(size_t(r) * stride));
      }
      const cuda::DeviceBuffer src = upload(blocks);
      const cuda::DeviceBuffer dst = filled(n, std::nanf(""));
      cuda::k::rank_tree_sum(static_cast<const float*>(src.data()), stride, g, static_cast<float*>(dst.data()), n,
                             cuda::current_stream());
      SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum");
      const std::vector<float> got = download<float>(dst.data(), n);
      const std::vector<float> want = inprocess_sum(g, n);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(float)), 0) << g << " ranks, stride " << stride;
    }
  }
}

TEST(NcclTreeSum, NothingToSumLaunchesNothing) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  SPARROW_CUDA_CHECK(cudaSetDevice(0));
  cuda::k::rank_tree_sum(nullptr, 0, 4, nullptr, 0, cuda::current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum");
  cuda::synchronize();
}

}  // namespace
}  // namespace sparrow
