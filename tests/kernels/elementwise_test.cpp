// Elementwise ops of ops.h against the plain reference loops, on awkward shapes, f32 and bf16.
#include <gtest/gtest.h>

#include <limits>

#include <cmath>
#include <random>
#include <vector>

#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/elementwise_ref.h"

namespace sparrow {
namespace {

Buffer random_tensor(DType dt, Shape s, uint32_t seed, float lo = -2.f, float hi = 2.f) {
  Buffer b(dt, s);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < s.numel(); ++i) store_from_f32(b.data(), dt, size_t(i), u(g));
  return b;
}

Buffer copy_of(const Buffer& src) {
  Buffer b(src.tensor().dtype(), src.tensor().shape());
  std::memcpy(b.data(), src.data(), src.nbytes());
  return b;
}

// Max difference in units of the output dtype's rounding step at the value's magnitude.
void expect_close(const Tensor& a, const Tensor& b, double rel, double abs_tol = 1e-6) {
  ASSERT_EQ(a.numel(), b.numel());
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = load_as_f32(a.data(), a.dtype(), size_t(i)), y = load_as_f32(b.data(), b.dtype(), size_t(i));
    ASSERT_LE(std::fabs(x - y), abs_tol + rel * std::fabs(y)) << "element " << i;
  }
}

class ElementwiseTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  double rel() const { return dt() == DType::kF32 ? 1e-5 : 1.6e-2; }
};

TEST_P(ElementwiseTest, RmsNormAndResidualAdd) {
  for (int64_t t : {1, 7, 33}) {
    for (int64_t h : {16, 17, 100}) {
      Buffer x = random_tensor(dt(), {t, h}, 1), w = random_tensor(DType::kF32, {h}, 2, 0.5f, 1.5f);
      Buffer y(dt(), {t, h}), y_ref(dt(), {t, h});
      ops::rms_norm(x.tensor(), w.tensor(), 1e-6f, y.tensor());
      ref::rms_norm(x.tensor(), w.tensor(), 1e-6f, y_ref.tensor());
      expect_close(y.tensor(), y_ref.tensor(), rel());

      Buffer r = random_tensor(dt(), {t, h}, 3), r_ref = copy_of(r);
      ops::add_rms_norm(x.tensor(), r.tensor(), w.tensor(), 1e-6f, y.tensor());
      for (int64_t i = 0; i < t * h; ++i)
        store_from_f32(r_ref.data(), dt(), size_t(i), load_as_f32(r_ref.data(), dt(), size_t(i)) + load_as_f32(x.data(), dt(), size_t(i)));
      ref::rms_norm(r_ref.tensor(), w.tensor(), 1e-6f, y_ref.tensor());
      expect_close(r.tensor(), r_ref.tensor(), 0.0, 0.0);
      expect_close(y.tensor(), y_ref.tensor(), rel());
    }
  }
}

TEST_P(ElementwiseTest, HeadNormAndRope) {
  const int64_t t = 7, heads = 3, d = 16;
  Buffer x = random_tensor(dt(), {t, heads, d}, 4), x_ref = copy_of(x);
  Buffer w = random_tensor(DType::kF32, {d}, 5, 0.5f, 1.5f);
  ops::head_rms_norm(x.tensor(), w.tensor(), 1e-6f);
  ref::head_rms_norm(x_ref.tensor(), w.tensor(), 1e-6f);
  expect_close(x.tensor(), x_ref.tensor(), rel());
  std::vector<int32_t> pos = {0, 1, 2, 17, 100, 511, 4095};
  std::vector<float> inv_freq;
  for (int64_t i = 0; i < d / 2; ++i) inv_freq.push_back(float(std::pow(10000.0, -2.0 * double(i) / double(d))));
  Buffer y = copy_of(x_ref);
  ops::rope(y.tensor(), pos.data(), inv_freq.data());
  ref::rope(x_ref.tensor(), pos.data(), inv_freq.data());
  expect_close(y.tensor(), x_ref.tensor(), rel(), 1e-5);
}

TEST_P(ElementwiseTest, SiluMulEmbeddingLogSoftmax) {
  Buffer g = random_tensor(dt(), {33, 17}, 6), u = random_tensor(dt(), {33, 17}, 7);
  Buffer y(dt(), {33, 17}), y_ref(dt(), {33, 17});
  ops::silu_mul(g.tensor(), u.tensor(), y.tensor());
  ref::silu_mul(g.tensor(), u.tensor(), y_ref.tensor());
  expect_close(y.tensor(), y_ref.tensor(), rel(), 1e-6);

  Buffer table = random_tensor(dt(), {50, 9}, 8);
  std::vector<int32_t> ids = {3, 0, 49, 3};
  Buffer e(dt(), {4, 9}), e_ref(dt(), {4, 9});
  ops::embedding(table.tensor(), ids.data(), e.tensor());
  ref::embedding(table.tensor(), ids.data(), e_ref.tensor());
  expect_close(e.tensor(), e_ref.tensor(), 0.0, 0.0);
  ids[1] = 50;
  EXPECT_THROW(ops::embedding(table.tensor(), ids.data(), e.tensor()), Error);

  Buffer logits = random_tensor(dt(), {5, 1001}, 9, -20.f, 20.f);
  Buffer lp(DType::kF32, {5, 1001}), lp_ref(DType::kF32, {5, 1001});
  ops::log_softmax(logits.tensor(), lp.tensor());
  ref::log_softmax(logits.tensor(), lp_ref.tensor());
  expect_close(lp.tensor(), lp_ref.tensor(), 1e-6, 1e-5);
}

TEST_P(ElementwiseTest, RouterTopKTiesGoToLowerExpert) {
  const int64_t t = 33, e = 8;
  const int k = 3;
  Buffer logits = random_tensor(DType::kF32, {t, e}, 10);
  // Row 0: all equal -> experts 0, 1, 2. Row 1: a tie between experts 5 and 2 at the top.
  for (int64_t i = 0; i < e; ++i) logits.tensor().data_as<float>()[i] = 0.5f;
  float* r1 = logits.tensor().data_as<float>() + e;
  r1[5] = 9.f;
  r1[2] = 9.f;
  for (bool renorm : {false, true}) {
    std::vector<int32_t> ids(t * k), ids_ref(t * k);
    std::vector<float> w(t * k), w_ref(t * k);
    ops::route_topk_softmax(logits.tensor(), k, renorm, ids.data(), w.data());
    ref::route_topk_softmax(logits.tensor(), k, renorm, ids_ref.data(), w_ref.data());
    EXPECT_EQ(ids, ids_ref);
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], w_ref[i], 1e-6);
    EXPECT_EQ(ids[0], 0);
    EXPECT_EQ(ids[1], 1);
    EXPECT_EQ(ids[2], 2);
    EXPECT_EQ(ids[3], 2);
    EXPECT_EQ(ids[4], 5);
    if (renorm) {
      EXPECT_NEAR(w[0] + w[1] + w[2], 1.0, 1e-6);
    }
  }
}

// Greedy choice: first index of the maximum (ties to the lower id), -inf rows pick 0, NaN
// never beats a number after index 0; the sampler's greedy path is this op.
TEST(ArgmaxRows, FirstMaximumWins) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {1, 3, 3, 2,  -inf, -inf, -inf, -inf,  0, nan, 5, 5,  -1, -2, -0.5f, -3};
  std::vector<int32_t> out(4, -1);
  ops::argmax_rows(Tensor(x.data(), DType::kF32, {4, 4}), out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{1, 0, 2, 2}));
}

// The vectorized two-pass argmax gives the plain scan's index ('>' only, from index 0) on
// long rows with ties, NaNs (at 0 too), -inf and signed zeros, across the lane blocks.
TEST(ArgmaxRows, MatchesAPlainScanOnLongRows) {
  std::mt19937 rng(3);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const auto scan = [](const std::vector<float>& r) {
    int32_t best = 0;
    for (size_t i = 1; i < r.size(); ++i)
      if (r[i] > r[size_t(best)]) best = int32_t(i);
    return best;
  };
  for (int64_t v : {1, 15, 16, 17, 33, 1000, 151936})
    for (int kind = 0; kind < 6; ++kind) {
      std::vector<float> row(static_cast<size_t>(v));
      std::uniform_int_distribution<int> level(-3, 3);
      for (float& x : row) x = kind == 1 ? float(level(rng)) : std::uniform_real_distribution<float>(-5, 5)(rng);
      if (kind == 2) for (size_t i = 0; i < row.size(); i += 7) row[i] = nan;
      if (kind == 3) row[0] = nan;
      if (kind == 4) for (float& x : row) x = (rng() & 1) ? -inf : nan;
      if (kind == 5) for (float& x : row) x = (rng() & 1) ? 0.0f : -0.0f;
      int32_t got = -1;
      ops::argmax_rows(Tensor(row.data(), DType::kF32, {1, v}), &got);
      EXPECT_EQ(got, scan(row)) << "length " << v << " kind " << kind;
    }
}

INSTANTIATE_TEST_SUITE_P(DTypes, ElementwiseTest, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(info.param == DType::kF32 ? "f32" : "bf16"); });

}  // namespace
}  // namespace sparrow
