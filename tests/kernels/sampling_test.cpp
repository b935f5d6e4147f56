// ops::sample_rows on the CPU (partial sorts, hopeless tokens skipped) against the plain
// full-sort definition (kernels/reference/sampling_ref.h), on vocabulary-sized rows: every
// mix of temperature / top-k / top-p / min-p, runs of tied logits, peaked rows. And
// ops::row_logprobs on the CPU: the host path's log_softmax + top_n, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "sparrow/kernels/logprobs.h"
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

// A forced row (a teacher-forced prompt position, RowSampling::forced) gets its token
// whatever its logits and other parameters; one outside the vocabulary is an error.
TEST(SampleRows, ForcedRowsKeepTheirToken) {
  const int64_t V = 1000;
  std::vector<float> x(static_cast<size_t>(2 * V), 0.0f);
  x[17] = 5.0f;  // row 0's argmax
  std::vector<RowSampling> rs(2);
  rs[0].forced = 900;
  rs[1] = {0.8f, 10, 0.9f, 0.0f, 3, 4};
  rs[1].forced = 0;
  std::vector<int32_t> got(2, -1);
  ops::sample_rows(Tensor(x.data(), DType::kF32, {2, V}), rs.data(), got.data());
  EXPECT_EQ(got, (std::vector<int32_t>{900, 0}));
  EXPECT_EQ(ref::sample_row(x.data(), V, rs[0]), 900);
  rs[0].forced = int32_t(V);
  EXPECT_THROW(ops::sample_rows(Tensor(x.data(), DType::kF32, {2, V}), rs.data(), got.data()), Error);
}

// What the executor reports for a sampled row is what the scheduler's host path computes
// from the same logits (ops::log_softmax, then top_n), bit for bit: ties, rows where
// distinct logits share one logprob, -inf entries, top_n 0 / 1 / the cap / beyond V, and
// rows that want nothing are left untouched.
TEST(RowLogprobs, AreTheHostPathsLogSoftmaxAndTopN) {
  std::mt19937 rng(3);
  for (const int64_t V : {int64_t(50000), int64_t(40)}) {
    const int64_t R = 8;
    std::vector<float> x(static_cast<size_t>(R * V));
    std::uniform_real_distribution<float> u(-4.f, 4.f);
    std::uniform_int_distribution<int> level(0, 12);
    std::vector<RowLogprobs> params(static_cast<size_t>(R));
    std::vector<int32_t> chosen(static_cast<size_t>(R));
    const int top[R] = {5, 20, 64, 0, 1, -1, 64, 7};
    for (int64_t r = 0; r < R; ++r) {
      float* row = x.data() + r * V;
      for (int64_t i = 0; i < V; ++i) {
        switch (r % 4) {
          case 0: row[i] = u(rng); break;
          case 1: row[i] = 0.5f * float(level(rng)) - 3.f; break;  // 13 levels: long runs of ties
          case 2: row[i] = 1e-3f * u(rng); break;                  // distinct logits, fewer distinct logprobs
          default: row[i] = i % 101 == 3 ? u(rng) : -INFINITY;     // mostly -inf
        }
      }
      RowLogprobs& p = params[size_t(r)];
      p.top_n = top[r];
      p.num_ids = int32_t(r * 9 % (kRowLogprobsMaxIds + 1));
      for (int j = 0; j < p.num_ids; ++j) p.ids[j] = int32_t((j * 7919 + r) % V);
      chosen[size_t(r)] = int32_t((r * 12345) % V);
    }
    std::vector<RowLogprobsOut> out(static_cast<size_t>(R));
    std::memset(static_cast<void*>(out.data()), 0x7f, out.size() * sizeof(RowLogprobsOut));
    const RowLogprobsOut untouched = out[5];
    ops::row_logprobs(Tensor(x.data(), DType::kF32, {R, V}), chosen.data(), params.data(), out.data());
    std::vector<float> lp(static_cast<size_t>(V));
    for (int64_t r = 0; r < R; ++r) {
      const RowLogprobs& p = params[size_t(r)];
      const RowLogprobsOut& o = out[size_t(r)];
      if (p.top_n < 0) {
        EXPECT_EQ(std::memcmp(&o, &untouched, sizeof(o)), 0) << "row " << r << " was written";
        continue;
      }
      ops::log_softmax(Tensor(x.data() + r * V, DType::kF32, {1, V}), Tensor(lp.data(), DType::kF32, {1, V}));
      EXPECT_EQ(o.logprob, lp[size_t(chosen[size_t(r)])]) << "V " << V << " row " << r;
      for (int j = 0; j < p.num_ids; ++j) EXPECT_EQ(o.id_logprobs[j], lp[size_t(p.ids[j])]) << "row " << r << " id " << j;
      const std::vector<TokenLogprob> want = top_n(lp.data(), V, p.top_n);
      ASSERT_EQ(int64_t(want.size()), std::min<int64_t>(p.top_n, V));
      for (size_t j = 0; j < want.size(); ++j) {
        EXPECT_EQ(o.top_ids[j], want[j].token_id) << "V " << V << " row " << r << " rank " << j;
        EXPECT_EQ(o.top_logprobs[j], want[j].logprob) << "V " << V << " row " << r << " rank " << j;
      }
    }
  }
}

// sample_edited_rows is the executor's order of the ops: the token is sample_rows' choice
// from the edited logits (here, edits that move the choice: the top token masked, another
// pushed down), its logprobs are row_logprobs' under the logits as given, and the logits
// are as given again on return (restore_logits puts the saved originals back).
TEST(SampleEditedRows, SampleEditedLogprobsOfTheLogitsAsGiven) {
  std::mt19937 rng(11);
  constexpr int64_t R = 4, V = 3000;
  std::vector<float> x(static_cast<size_t>(R * V));
  std::uniform_real_distribution<float> u(-5.f, 5.f);
  for (auto& v : x) v = u(rng);
  std::vector<RowSampling> sp(static_cast<size_t>(R));
  sp[1] = {0.7f, 40, 0.9f, 0.0f, 9, 100};
  sp[3] = {1.0f, -1, 1.0f, 0.05f, 4, 7};
  std::vector<LogitEdit> edits;
  for (int32_t r = 0; r < int32_t(R); ++r) {
    int32_t top = 0;
    ops::argmax_rows(Tensor(x.data() + r * V, DType::kF32, {1, V}), &top);
    edits.push_back({r, top, 1.0f, 0.0f, 1});                        // the favourite masked
    edits.push_back({r, (top + 1) % int32_t(V), 1.5f, 0.25f, 0});    // another penalized
  }
  std::vector<RowLogprobs> lp(static_cast<size_t>(R));
  for (auto& p : lp) p.top_n = 3;
  const std::vector<float> given = x;
  std::vector<float> saved(edits.size());
  std::vector<int32_t> got(static_cast<size_t>(R));
  std::vector<RowLogprobsOut> got_lp(static_cast<size_t>(R));
  const Tensor t(x.data(), DType::kF32, {R, V});
  ops::sample_edited_rows(t, edits.data(), int64_t(edits.size()), saved.data(), sp.data(), got.data(), lp.data(),
                          got_lp.data());
  EXPECT_EQ(std::memcmp(x.data(), given.data(), x.size() * 4), 0) << "logits not restored";
  for (size_t i = 0; i < edits.size(); ++i) EXPECT_EQ(saved[i], given[size_t(edits[i].row * V + edits[i].token)]);
  std::vector<float> edited = given;
  ops::apply_logit_edits(Tensor(edited.data(), DType::kF32, {R, V}), edits.data(), int64_t(edits.size()), nullptr);
  std::vector<int32_t> want(static_cast<size_t>(R));
  ops::sample_rows(Tensor(edited.data(), DType::kF32, {R, V}), sp.data(), want.data());
  std::vector<RowLogprobsOut> want_lp(static_cast<size_t>(R));
  std::vector<float> raw = given;
  ops::row_logprobs(Tensor(raw.data(), DType::kF32, {R, V}), want.data(), lp.data(), want_lp.data());
  for (int64_t r = 0; r < R; ++r) {
    EXPECT_EQ(got[size_t(r)], want[size_t(r)]) << "row " << r;
    EXPECT_NE(got[size_t(r)], edits[size_t(2 * r)].token) << "row " << r << " chose its masked token";
    EXPECT_EQ(got_lp[size_t(r)].logprob, want_lp[size_t(r)].logprob) << "row " << r;
    EXPECT_EQ(got_lp[size_t(r)].top_ids[0], edits[size_t(2 * r)].token) << "top-1 of the logits as given";
  }
}

// An edit outside the [R, V] logits is an error naming the op, for both ops; nothing past
// the bad edit is written.
TEST(LogitEdits, OutOfRangeEditsAreErrors) {
  std::vector<float> x(2 * 5, 1.0f);
  const Tensor t(x.data(), DType::kF32, {2, 5});
  const std::vector<LogitEdit> bad_token = {{0, 1, 1.0f, 0.5f, 0}, {1, 5, 1.0f, 0.5f, 0}, {1, 2, 1.0f, 0.5f, 0}};
  std::vector<float> saved(bad_token.size());
  EXPECT_THROW(ops::apply_logit_edits(t, bad_token.data(), 3, saved.data()), Error);
  EXPECT_EQ(x[1], 0.5f);  // the edit before the bad one was applied
  EXPECT_EQ(x[7], 1.0f);  // the one after was not
  const LogitEdit bad_row{2, 0, 1.0f, 0.0f, 1};
  EXPECT_THROW(ops::restore_logits(t, &bad_row, 1, saved.data()), Error);
  const LogitEdit negative{0, -1, 1.0f, 0.0f, 1};
  EXPECT_THROW(ops::apply_logit_edits(t, &negative, 1, nullptr), Error);
}

}  // namespace
}  // namespace sparrow
