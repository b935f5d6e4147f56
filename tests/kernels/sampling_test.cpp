// ops::sample_rows on the CPU (partial sorts, hopeless tokens skipped) against the plain
// full-sort definition (kernels/reference/sampling_ref.h), on vocabulary-sized rows: every
// mix of temperature / top-k / top-p / min-p, runs of tied logits, peaked rows.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/sampling_ref.h"

namespace sparrow {
namespace {

TEST(SampleRows, MatchesTheFullSortDefinition) {
  std::mt19937 rng(21);
  const int64_t V = 50000;
  struct Case { float t; int32_t k; float p, min_p; int kind; };  // kind 0 uniform, 1 tied, 2 peaked
  const std::vector<Case> cases = {{1.0f, -1, 1.0f, 0.0f, 0},  {0.7f, 50, 1.0f, 0.0f, 0},  {1.0f, -1, 0.9f, 0.0f, 0},
                                   {1.3f, 1000, 0.8f, 0.0f, 0}, {1.0f, -1, 1.0f, 0.05f, 0}, {0.5f, 20, 0.5f, 0.1f, 0},
                                   {1.0f, 37, 0.37f, 0.0f, 1},  {0.0f, -1, 1.0f, 0.0f, 1},  {0.8f, -1, 0.61f, 0.0f, 1},
                                   {1.0f, -1, 0.95f, 0.0f, 2},  {0.9f, 90000, 0.7f, 0.02f, 2}, {1.0f, -1, 1.0f, 0.0f, 2},
                                   {0.05f, -1, 0.99f, 0.0f, 0}};
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  std::uniform_int_distribution<int> level(0, 12);
  std::vector<float> row(static_cast<size_t>(V));
  int distinct = 0;
  for (size_t c = 0; c < cases.size(); ++c) {
    int32_t first = -1;
    for (int64_t pos = 0; pos < 6; ++pos) {
      for (int64_t i = 0; i < V; ++i) {
        float& x = row[size_t(i)];
        x = cases[c].kind == 1 ? 0.5f * float(level(rng)) - 3.f : cases[c].kind == 2 ? (i % 997 == 0 ? u(rng) + 12.f : u(rng) - 30.f) : u(rng);
      }
      const RowSampling rs{cases[c].t, cases[c].k, cases[c].p, cases[c].min_p, 100 + c, pos};
      int32_t got = -1;
      ops::sample_rows(Tensor(row.data(), DType::kF32, {1, V}), &rs, &got);
      EXPECT_EQ(got, ref::sample_row(row.data(), V, rs)) << "case " << c << " position " << pos;
      if (pos == 0) first = got;
      else distinct += got != first;
    }
  }
  EXPECT_GT(distinct, 20);  // draws vary with the position and the row
}

}  // namespace
}  // namespace sparrow
