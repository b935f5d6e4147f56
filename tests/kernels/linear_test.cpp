#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernel_test_util.h"
#include "sparrow/core/error.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/linear_ref.h"

namespace sparrow {
namespace {

using testing::fill_uniform;
using testing::ScopedIsa;
using testing::to_f32;

struct Problem {
  Buffer x, w, bias, y;
  bool has_bias = false;
};

// x and w dtypes of a call: bf16/bf16, f32/f32, or f32 activations with bf16 weights.
struct InTypes {
  DType x, w;
};
const InTypes kInTypes[] = {{DType::kBF16, DType::kBF16}, {DType::kF32, DType::kF32}, {DType::kF32, DType::kBF16}};
std::string in_name(InTypes in) {
  return fmt::format("x {} w {}", dtype_name(in.x), dtype_name(in.w));
}

Problem make_problem(int64_t T, int64_t N, int64_t K, InTypes in_t, DType y_t, DType bias_t,
                     bool has_bias, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p{Buffer(in_t.x, {T, K}), Buffer(in_t.w, {N, K}), Buffer(bias_t, {N}), Buffer(y_t, {T, N}),
            has_bias};
  fill_uniform(p.x.tensor(), rng);
  fill_uniform(p.w.tensor(), rng);
  fill_uniform(p.bias.tensor(), rng);
  return p;
}

void run(const Problem& p) {
  ops::linear(p.x.tensor(), p.w.tensor(), p.has_bias ? &p.bias.tensor() : nullptr, p.y.tensor());
}

// Checks y against a double-precision evaluation with a bound for fp32 accumulation over
// 16 lanes plus the final rounding to y's dtype.
void expect_close_to_exact(const Problem& p, const std::string& what) {
  const Tensor& x = p.x.tensor();
  const Tensor& w = p.w.tensor();
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  const std::vector<float> xf = to_f32(x), wf = to_f32(w), bf = to_f32(p.bias.tensor()),
                           yf = to_f32(p.y.tensor());
  const double out_rel = p.y.tensor().dtype() == DType::kBF16  ? std::ldexp(1.0, -8)
                         : p.y.tensor().dtype() == DType::kF16 ? std::ldexp(1.0, -11)
                                                               : 0.0;
  int bad = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double exact = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double prod = double(xf[size_t(t * K + k)]) * wf[size_t(n * K + k)];
        exact += prod;
        mag += std::fabs(prod);
      }
      if (p.has_bias) {
        exact += bf[size_t(n)];
        mag += std::fabs(bf[size_t(n)]);
      }
      const double tol = mag * double(K / 16 + 8) * std::ldexp(1.0, -23) +
                         std::fabs(exact) * out_rel + 1e-30;
      const double got = yf[size_t(t * N + n)];
      if (!(std::fabs(got - exact) <= tol) && bad++ < 5)
        ADD_FAILURE() << what << " y[" << t << "," << n << "] = " << got << ", exact " << exact
                      << ", tol " << tol;
    }
  EXPECT_EQ(bad, 0) << what;
}

TEST(Linear, ReferenceMatchesExact) {
  for (InTypes in_t : kInTypes) {
    Problem p = make_problem(5, 9, 100, in_t, DType::kF32, DType::kF32, true, 1);
    ref::linear(p.x.tensor(), p.w.tensor(), &p.bias.tensor(), p.y.tensor());
    expect_close_to_exact(p, "ref");
  }
}

TEST(Linear, MatchesReferenceOnAwkwardShapes) {
  uint32_t seed = 10;
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    for (InTypes in_t : kInTypes)
      for (int64_t T : {0, 1, 2, 3, 7, 33, 257})
        for (int64_t K : {16, 17, 31, 64, 100, 2048})
          for (int64_t N : {1, 5, 37}) {
            if (T == 257 && N == 1) continue;
            Problem p = make_problem(T, N, K, in_t, DType::kF32, DType::kF32, (T + N) % 2 == 1, ++seed);
            run(p);
            expect_close_to_exact(p, fmt::format("{} {} T={} N={} K={}", cpu::isa_name(isa),
                                                 in_name(in_t), T, N, K));
          }
  }
}

TEST(Linear, OutputAndBiasDtypes) {
  uint32_t seed = 500;
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    for (InTypes in_t : kInTypes)
      for (DType y_t : {DType::kF32, DType::kBF16, DType::kF16})
        for (DType bias_t : {DType::kF32, DType::kBF16}) {
          Problem p = make_problem(6, 19, 77, in_t, y_t, bias_t, true, ++seed);
          run(p);
          expect_close_to_exact(p, fmt::format("{} {}->{} bias {}", cpu::isa_name(isa),
                                               in_name(in_t), dtype_name(y_t), dtype_name(bias_t)));
        }
  }
}

std::vector<uint32_t> bits_of(const Tensor& t) {
  std::vector<uint32_t> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = f32_bits(load_as_f32(t.data(), t.dtype(), i));
  return v;
}

// A row's result must not depend on how many rows are in the call (T), on which rows
// share a register block, or on how the output features are split (threads, N tiles).
TEST(Linear, BatchInvariantBitwise) {
  for (cpu::Isa isa : testing::optimized_isas()) {
    ScopedIsa scoped(isa);
    for (InTypes in_t : kInTypes)
      for (int64_t K : {100, 2048}) {
        const int64_t T = 67, N = 203;
        Problem p = make_problem(T, N, K, in_t, DType::kF32, DType::kF32, true, 77);
        run(p);
        const std::vector<uint32_t> full = bits_of(p.y.tensor());
        const std::string what = fmt::format("{} {} K={}", cpu::isa_name(isa), in_name(in_t), K);
        // Row subsets of every size at every alignment relative to the 4-row blocks.
        for (int64_t len : {1, 2, 3, 5, 8, 33}) {
          for (int64_t t0 = 0; t0 + len <= T; t0 += 7) {
            Buffer y(DType::kF32, {len, N});
            ops::linear(p.x.tensor().slice_rows(t0, t0 + len), p.w.tensor(), &p.bias.tensor(),
                        y.tensor());
            const std::vector<uint32_t> sub = bits_of(y.tensor());
            for (int64_t t = 0; t < len; ++t)
              ASSERT_EQ(0, std::memcmp(&sub[size_t(t * N)], &full[size_t((t0 + t) * N)], size_t(N) * 4))
                  << what << " rows [" << t0 << ", " << t0 + len << ") row " << t;
          }
        }
        // Column subsets: w row ranges at odd offsets (a different thread / tile split).
        for (int64_t n0 : {0, 1, 3, 50, 199}) {
          const int64_t n1 = std::min(N, n0 + 13);
          Buffer y(DType::kF32, {T, n1 - n0});
          Buffer b(DType::kF32, {n1 - n0});
          std::memcpy(b.data(), p.bias.tensor().data_as<float>() + n0, size_t(n1 - n0) * 4);
          ops::linear(p.x.tensor(), p.w.tensor().slice_rows(n0, n1), &b.tensor(), y.tensor());
          const std::vector<uint32_t> sub = bits_of(y.tensor());
          for (int64_t t = 0; t < T; ++t)
            for (int64_t n = n0; n < n1; ++n)
              ASSERT_EQ(sub[size_t(t * (n1 - n0) + n - n0)], full[size_t(t * N + n)])
                  << what << " column " << n << " row " << t;
        }
      }
  }
}

// The AVX2 kernel emulates the AVX-512 lane layout and operation order exactly, so both
// give the same bits (inputs here have no subnormals, which vdpbf16ps flushes).
TEST(Linear, Avx2AndAvx512AgreeBitwise) {
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 BF16";
  for (InTypes in_t : kInTypes)
    for (int64_t K : {17, 48, 64, 100, 2048}) {
      Problem p = make_problem(9, 41, K, in_t, DType::kF32, DType::kF32, true, 99);
      std::vector<uint32_t> r[2];
      int i = 0;
      for (cpu::Isa isa : {cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
        ScopedIsa scoped(isa);
        run(p);
        r[i++] = bits_of(p.y.tensor());
      }
      EXPECT_EQ(r[0], r[1]) << in_name(in_t) << " K=" << K;
    }
}

// fp32 activations with bf16 weights: each product is formed exactly inside an FMA, so the
// only error is fp32 accumulation. On decode shapes the result stays within ~1e-6 of the
// exact value relative to sum |x*w| (the hi/lo bf16 split of x would give ~1e-5).
TEST(Linear, MixedF32Bf16NearFp32) {
  for (cpu::Isa isa : testing::optimized_isas()) {
    ScopedIsa scoped(isa);
    for (int64_t K : {1024, 2048}) {
      Problem p = make_problem(3, 64, K, {DType::kF32, DType::kBF16}, DType::kF32, DType::kF32, false, 123);
      run(p);
      const std::vector<float> xf = to_f32(p.x.tensor()), wf = to_f32(p.w.tensor()),
                               yf = to_f32(p.y.tensor());
      double worst = 0;
      for (int64_t t = 0; t < 3; ++t)
        for (int64_t n = 0; n < 64; ++n) {
          double exact = 0, mag = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double prod = double(xf[size_t(t * K + k)]) * wf[size_t(n * K + k)];
            exact += prod;
            mag += std::fabs(prod);
          }
          worst = std::max(worst, std::fabs(yf[size_t(t * 64 + n)] - exact) / mag);
        }
      EXPECT_LT(worst, 1e-6) << cpu::isa_name(isa) << " K=" << K;
    }
  }
}

TEST(Linear, AcceptsHigherRankAndStridedRows) {
  std::mt19937 rng(5);
  Buffer x(DType::kBF16, {2, 3, 40}), w(DType::kBF16, {11, 40}), y(DType::kF32, {2, 3, 11});
  fill_uniform(x.tensor(), rng);
  fill_uniform(w.tensor(), rng);
  ops::linear(x.tensor(), w.tensor(), nullptr, y.tensor());
  Buffer y2(DType::kF32, {6, 11});
  ops::linear(x.tensor().view({6, 40}), w.tensor(), nullptr, y2.tensor());
  EXPECT_EQ(0, std::memcmp(y.data(), y2.data(), 6 * 11 * 4));
}

TEST(Linear, RejectsBadArguments) {
  Buffer x(DType::kBF16, {2, 8}), w(DType::kBF16, {3, 8}), wf(DType::kF32, {3, 8}),
      w7(DType::kBF16, {3, 7}), y(DType::kF32, {2, 3}), y4(DType::kF32, {2, 4}),
      yi(DType::kI32, {2, 3}), b4(DType::kF32, {4});
  EXPECT_THROW(ops::linear(x.tensor(), wf.tensor(), nullptr, y.tensor()), InputError);
  EXPECT_THROW(ops::linear(x.tensor(), w7.tensor(), nullptr, y.tensor()), InputError);
  EXPECT_THROW(ops::linear(x.tensor(), w.tensor(), nullptr, y4.tensor()), InputError);
  EXPECT_THROW(ops::linear(x.tensor(), w.tensor(), nullptr, yi.tensor()), InputError);
  EXPECT_THROW(ops::linear(x.tensor(), w.tensor(), &b4.tensor(), y.tensor()), InputError);
  EXPECT_NO_THROW(ops::linear(x.tensor(), w.tensor(), nullptr, y.tensor()));
  Buffer xf(DType::kF32, {2, 8});
  EXPECT_NO_THROW(ops::linear(xf.tensor(), w.tensor(), nullptr, y.tensor()));  // f32 x, bf16 w
}

}  // namespace
}  // namespace sparrow
