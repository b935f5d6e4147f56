// ops::linear_leaves against the path it replaces: `leaves` separate ops::linear calls on
// the column blocks into fp32, combined by tree_combine. The deterministic layouts depend
// on these bits (tests/parallel), so they must match exactly on every ISA, dtype
// combination and awkward shape, including leaf widths that are not a multiple of the
// kernels' 16 / 32-value chunks and strided views of x, w and y.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "kernel_test_util.h"
#include "sparrow/core/error.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/linear_ref.h"
#include "sparrow/model/layers/row_parallel.h"

namespace sparrow {
namespace {

using testing::fill_uniform;
using testing::ScopedIsa;
using testing::to_f32;

struct InTypes {
  DType x, w;
};
const InTypes kInTypes[] = {{DType::kBF16, DType::kBF16}, {DType::kF32, DType::kF32}, {DType::kF32, DType::kBF16}};

// Row by row, so strided views read correctly.
std::vector<float> rows_f32(const Tensor& t) {
  std::vector<float> v;
  for (int64_t r = 0; r < t.size(0); ++r)
    for (int64_t c = 0; c < t.size(1); ++c) v.push_back(load_as_f32(t.row_ptr(r), t.dtype(), size_t(c)));
  return v;
}

std::vector<uint32_t> bits_of(const Tensor& t) {
  std::vector<uint32_t> v;
  for (int64_t r = 0; r < t.size(0); ++r)
    for (int64_t c = 0; c < t.size(1); ++c)
      v.push_back(f32_bits(load_as_f32(t.row_ptr(r), t.dtype(), size_t(c))));
  return v;
}

// The separate-call path: one ops::linear per leaf into its own fp32 block, then the tree.
Buffer separate_calls(const Tensor& x, const Tensor& w, int leaves) {
  const int64_t T = x.size(0), N = w.size(0), kl = x.size(1) / leaves;
  std::vector<Buffer> parts;
  std::vector<float*> blocks;
  for (int l = 0; l < leaves; ++l) {
    parts.emplace_back(DType::kF32, Shape{T, N});
    ops::linear(x.slice_cols(l * kl, (l + 1) * kl), w.slice_cols(l * kl, (l + 1) * kl), nullptr, parts.back().tensor());
    blocks.push_back(parts.back().tensor().data_as<float>());
  }
  tree_combine(blocks.data(), leaves, size_t(T * N));
  return std::move(parts[0]);
}

// Operands as column windows of wider buffers (row strides > K), so the kernel cannot
// assume dense rows.
struct Operands {
  Buffer xb, wb;
  Tensor x, w;
};

Operands make(int64_t T, int64_t N, int64_t K, InTypes in, uint32_t seed) {
  std::mt19937 rng(seed);
  Operands o{Buffer(in.x, {T, K + 7}), Buffer(in.w, {N, K + 5}), Tensor(), Tensor()};
  fill_uniform(o.xb.tensor(), rng);
  fill_uniform(o.wb.tensor(), rng);
  o.x = o.xb.tensor().slice_cols(3, 3 + K);
  o.w = o.wb.tensor().slice_cols(5, 5 + K);
  return o;
}

TEST(LinearLeaves, MatchesSeparateCallsBitwise) {
  uint32_t seed = 1;
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    for (InTypes in : kInTypes)
      for (int leaves : {1, 2, 3, 4, 5, 6, 7, 8})
        for (int64_t kl : {1, 16, 17, 31, 48, 100, 128})
          for (int64_t T : {1, 2, 3, 5, 7, 33}) {
            const int64_t N = T == 33 ? 37 : 5 + 2 * T;  // odd N: partial register blocks
            const Operands o = make(T, N, kl * leaves, in, ++seed);
            const Buffer want = separate_calls(o.x, o.w, leaves);
            Buffer got(DType::kF32, {T, N});
            ops::linear_leaves(o.x, o.w, leaves, got.tensor());
            ASSERT_EQ(bits_of(want.tensor()), bits_of(got.tensor()))
                << cpu::isa_name(isa) << " x " << dtype_name(in.x) << " w " << dtype_name(in.w) << " leaves=" << leaves
                << " kl=" << kl << " T=" << T << " N=" << N;
          }
  }
}

// Model-sized leaves (OLMoE: o_proj K = 2048 and expert down K = 1024 in 8 leaves, and a
// TP2 rank's 4 of them), prefill- and decode-shaped, through the large-T tiling.
TEST(LinearLeaves, MatchesSeparateCallsOnModelShapes) {
  const std::tuple<int64_t, int64_t, int> shapes[] = {{1, 1024, 8}, {8, 2048, 8}, {67, 1024, 8},
                                                      {300, 2048, 8}, {67, 512, 4}, {9, 1024, 2}};
  for (cpu::Isa isa : testing::optimized_isas()) {
    ScopedIsa scoped(isa);
    for (InTypes in : kInTypes)
      for (auto [T, K, leaves] : shapes) {
        const int64_t N = 83;
        const Operands o = make(T, N, K, in, uint32_t(T * K + leaves));
        const Buffer want = separate_calls(o.x, o.w, leaves);
        Buffer got(DType::kF32, {T, N});
        ops::linear_leaves(o.x, o.w, leaves, got.tensor());
        ASSERT_EQ(bits_of(want.tensor()), bits_of(got.tensor()))
            << cpu::isa_name(isa) << " x " << dtype_name(in.x) << " w " << dtype_name(in.w) << " T=" << T
            << " K=" << K << " leaves=" << leaves;
      }
  }
}

// A strided y (a column window of a wider buffer) and a bf16 y: the tree's fp32 sum is
// rounded once, as a separate-call path that rounds its final block would.
TEST(LinearLeaves, StridedAndBf16Output) {
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    const Operands o = make(11, 29, 8 * 40, {DType::kF32, DType::kBF16}, 7);
    const Buffer want = separate_calls(o.x, o.w, 8);
    Buffer wide(DType::kF32, {11, 40});
    const Tensor y = wide.tensor().slice_cols(4, 33);
    ops::linear_leaves(o.x, o.w, 8, y);
    EXPECT_EQ(bits_of(want.tensor()), bits_of(y)) << cpu::isa_name(isa);
    Buffer yb(DType::kBF16, {11, 29});
    ops::linear_leaves(o.x, o.w, 8, yb.tensor());
    const std::vector<float> w32 = rows_f32(want.tensor()), b16 = rows_f32(yb.tensor());
    for (size_t i = 0; i < w32.size(); ++i) {
      Buffer one(DType::kBF16, {1});
      store_from_f32(one.data(), DType::kBF16, 0, w32[i]);
      ASSERT_EQ(load_as_f32(one.data(), DType::kBF16, 0), b16[i]) << cpu::isa_name(isa) << " element " << i;
    }
  }
}

// The reference: block sums in double rounded to fp32, combined by the recursive pairwise
// tree, equal the reference-ISA separate-call path bit for bit (so tree_combine's
// iterative order is the recursive one), and every ISA stays within fp32 accumulation
// error of the exact sum.
TEST(LinearLeaves, ReferenceAgreesWithSeparateCallsAndExact) {
  for (int leaves : {1, 2, 3, 4, 6, 7, 8}) {
    const Operands o = make(6, 13, 24 * leaves, {DType::kF32, DType::kBF16}, uint32_t(100 + leaves));
    Buffer ref(DType::kF32, {6, 13});
    ref::linear_leaves(o.x, o.w, leaves, ref.tensor());
    {
      ScopedIsa scoped(cpu::Isa::kReference);
      const Buffer sep = separate_calls(o.x, o.w, leaves);
      EXPECT_EQ(bits_of(sep.tensor()), bits_of(ref.tensor())) << "leaves=" << leaves;
    }
    const std::vector<float> xf = rows_f32(o.x), wf = rows_f32(o.w);
    const int64_t K = o.x.size(1);
    for (cpu::Isa isa : testing::supported_isas()) {
      ScopedIsa scoped(isa);
      Buffer y(DType::kF32, {6, 13});
      ops::linear_leaves(o.x, o.w, leaves, y.tensor());
      const std::vector<float> yf = to_f32(y.tensor());
      for (int64_t t = 0; t < 6; ++t)
        for (int64_t n = 0; n < 13; ++n) {
          double exact = 0, mag = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double p = double(xf[size_t(t * K + k)]) * wf[size_t(n * K + k)];
            exact += p;
            mag += std::fabs(p);
          }
          EXPECT_NEAR(yf[size_t(t * 13 + n)], exact, mag * double(K / 16 + 16) * std::ldexp(1.0, -23))
              << cpu::isa_name(isa) << " leaves=" << leaves;
        }
    }
  }
}

TEST(LinearLeaves, Avx2AndAvx512AgreeBitwise) {
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 BF16";
  for (InTypes in : kInTypes) {
    const Operands o = make(9, 41, 8 * 100, in, 5);
    std::vector<uint32_t> r[2];
    int i = 0;
    for (cpu::Isa isa : {cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
      ScopedIsa scoped(isa);
      Buffer y(DType::kF32, {9, 41});
      ops::linear_leaves(o.x, o.w, 8, y.tensor());
      r[i++] = bits_of(y.tensor());
    }
    EXPECT_EQ(r[0], r[1]) << dtype_name(in.x) << " / " << dtype_name(in.w);
  }
}

TEST(LinearLeaves, RejectsBadArguments) {
  Buffer x(DType::kF32, {2, 128}), w(DType::kBF16, {3, 128}), y(DType::kF32, {2, 3});
  EXPECT_THROW(ops::linear_leaves(x.tensor(), w.tensor(), 5, y.tensor()), InputError);  // 128 % 5
  EXPECT_THROW(ops::linear_leaves(x.tensor(), w.tensor(), 0, y.tensor()), InputError);
  EXPECT_THROW(ops::linear_leaves(x.tensor(), w.tensor(), 128, y.tensor()), InputError);  // > 64
  EXPECT_NO_THROW(ops::linear_leaves(x.tensor(), w.tensor(), 64, y.tensor()));
}

}  // namespace
}  // namespace sparrow
