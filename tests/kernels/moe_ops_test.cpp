// The fused-MoE reference ops (ops::moe_experts / moe_combine on the CPU: the oracle of the
// GPU grouped GEMMs) against a composition of the optimized CPU ops, and scatter_rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "sparrow/kernels/ops.h"

namespace sparrow {
namespace {

Buffer random_tensor(DType dt, Shape s, uint32_t seed, float lo = -0.5f, float hi = 0.5f) {
  Buffer b(dt, s);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < s.numel(); ++i) store_from_f32(b.data(), dt, size_t(i), u(g));
  return b;
}

// Five tokens, top-2 of three experts, fixed routing.
class MoeExperts : public ::testing::Test {
 protected:
  static constexpr int64_t T = 5, H = 24, I = 12, E = 3;
  static constexpr int k = 2;
  const Buffer x = random_tensor(DType::kBF16, {T, H}, 1), w13 = random_tensor(DType::kBF16, {E, 2 * I, H}, 2),
               w2 = random_tensor(DType::kBF16, {E, H, I}, 3);
  const std::vector<int32_t> ids = {0, 2, 1, 0, 2, 1, 2, 2, 0, 1};
  const std::vector<float> weights = {0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f, 0.6f, 0.4f, 0.2f, 0.8f};
};

TEST_F(MoeExperts, ReferenceExpertsMatchLinearComposition) {
  Buffer slots(DType::kF32, {T * k, H});
  Arena ws(1 << 16);
  ops::moe_experts(x.tensor(), ids.data(), weights.data(), k, w13.tensor(), w2.tensor(), ws, slots.tensor());
  Buffer g(DType::kBF16, {1, I}), u(DType::kBF16, {1, I}), y(DType::kF32, {1, H});
  for (int64_t p = 0; p < T * k; ++p) {
    const int64_t t = p / k, e = ids[size_t(p)];
    const Tensor we(static_cast<uint16_t*>(w13.data()) + e * 2 * I * H, DType::kBF16, {2 * I, H});
    const Tensor xe = x.tensor().slice_rows(t, t + 1);
    ops::linear(xe, we.slice_rows(0, I), nullptr, g.tensor());
    ops::linear(xe, we.slice_rows(I, 2 * I), nullptr, u.tensor());
    ops::silu_mul(g.tensor(), u.tensor(), g.tensor());
    ops::linear(g.tensor(), Tensor(static_cast<uint16_t*>(w2.data()) + e * H * I, DType::kBF16, {H, I}), nullptr, y.tensor());
    for (int64_t i = 0; i < H; ++i) {
      const float want = y.tensor().data_as<float>()[i] * weights[size_t(p)];
      EXPECT_NEAR(slots.tensor().data_as<float>()[p * H + i], want, 1e-3 + 1e-2 * std::fabs(want)) << p << " " << i;
    }
  }
  // Combine: slot order, then the gated shared expert.
  Buffer shared = random_tensor(DType::kF32, {T, H}, 4), logit = random_tensor(DType::kF32, {T, 1}, 5), out(DType::kF32, {T, H});
  const Tensor st = shared.tensor(), lt = logit.tensor();
  ops::moe_combine(slots.tensor(), k, &st, &lt, out.tensor());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H; ++i) {
      const float* s = slots.tensor().data_as<float>();
      const float gate = 1.0f / (1.0f + std::exp(-lt.data_as<float>()[t]));
      const float want = (s[(t * k) * H + i] + s[(t * k + 1) * H + i]) + gate * st.data_as<float>()[t * H + i];
      EXPECT_FLOAT_EQ(out.tensor().data_as<float>()[t * H + i], want);
    }
}

// Expert parallelism: experts [1, 3) of 3 as a local slice (ids stay global). Pairs routed to
// expert 0 get zero rows; the others are exactly the whole computation's rows.
TEST_F(MoeExperts, LocalExpertSliceZeroesOtherRanksPairs) {
  Buffer whole(DType::kF32, {T * k, H}), local(DType::kF32, {T * k, H});
  Arena ws(1 << 16);
  ops::moe_experts(x.tensor(), ids.data(), weights.data(), k, w13.tensor(), w2.tensor(), ws, whole.tensor());
  const Tensor w13_local = w13.tensor().slice_rows(1, 3), w2_local = w2.tensor().slice_rows(1, 3);
  ops::moe_experts(x.tensor(), ids.data(), weights.data(), k, w13_local, w2_local, ws, local.tensor(), 1, E);
  for (int64_t p = 0; p < T * k; ++p)
    for (int64_t i = 0; i < H; ++i)
      EXPECT_EQ(local.tensor().data_as<float>()[p * H + i], ids[size_t(p)] == 0 ? 0.0f : whole.tensor().data_as<float>()[p * H + i])
          << p << " " << i;
}

// The rank-order tree over consecutive blocks (MoE-TP parts of the alltoall MoE):
// ((b0 + b1) + (b2 + b3)), written out with float adds.
TEST(MoeOps, TreeSumBlocksIsThePairwiseTree) {
  const int64_t rows = 3, cols = 5;
  const Buffer src = random_tensor(DType::kF32, {4 * rows, cols}, 11, -1e3f, 1e3f);
  Buffer dst(DType::kF32, {rows, cols});
  ops::tree_sum_blocks(src.tensor(), 4, dst.tensor());
  const float* s = src.tensor().data_as<float>();
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; ++i) {
    const float want = (s[i] + s[n + i]) + (s[2 * n + i] + s[3 * n + i]);
    EXPECT_EQ(dst.tensor().data_as<float>()[i], want) << i;
  }
  Buffer one(DType::kF32, {rows, cols});
  ops::tree_sum_blocks(src.tensor().slice_rows(0, rows), 1, one.tensor());
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(one.tensor().data_as<float>()[i], s[i]);
}

TEST(MoeOps, ScatterRowsWritesSlotsAndConverts) {
  const Buffer src = random_tensor(DType::kF32, {3, 2, 4}, 7);
  Buffer cache(DType::kBF16, {6, 2, 4});
  const std::vector<int32_t> rows = {4, 0, 2};
  ops::scatter_rows(src.tensor(), rows.data(), cache.tensor());
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t i = 0; i < 8; ++i)
      EXPECT_EQ(load_as_f32(cache.data(), DType::kBF16, size_t(rows[size_t(t)] * 8 + i)),
                bf16_to_f32(f32_to_bf16(src.tensor().data_as<float>()[t * 8 + i])));
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(load_as_f32(cache.data(), DType::kBF16, size_t(8 + i)), 0.f);  // untouched
  const std::vector<int32_t> bad = {6};
  EXPECT_THROW(ops::scatter_rows(src.tensor().slice_rows(0, 1), bad.data(), cache.tensor()), Error);
  // No rows (an idle DP group's step): nothing written, no shape complaint.
  const Buffer none(DType::kF32, {0, 2, 4});
  EXPECT_NO_THROW(ops::scatter_rows(none.tensor(), nullptr, cache.tensor()));
}

}  // namespace
}  // namespace sparrow
