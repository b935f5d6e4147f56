#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernel_test_util.h"
#include "sparrow/core/error.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/attention_ref.h"

namespace sparrow {
namespace {

using testing::fill_uniform;
using testing::ScopedIsa;

// A KV pool holding `lens.size()` sequences at scattered slots; sequence i lives in
// req_to_token row req_rows[i].
struct Pool {
  int64_t Hq, Hkv, D, max_ctx, slots;
  DType dt;   // of k and v
  DType qdt;  // of q and out
  Buffer k, v;
  std::vector<int32_t> r2t;
  std::vector<int32_t> req_rows;
  std::vector<int32_t> lens;
};

// (q dtype, kv dtype) combinations the op supports.
struct Dts {
  DType q, kv;
};
const Dts kDts[] = {{DType::kBF16, DType::kBF16}, {DType::kF32, DType::kF32}, {DType::kF32, DType::kBF16}};
std::string dts_name(Dts d) { return fmt::format("q {} kv {}", dtype_name(d.q), dtype_name(d.kv)); }

Pool make_pool(const std::vector<int32_t>& lens, int64_t Hq, int64_t Hkv, int64_t D, Dts dts,
               uint32_t seed) {
  std::mt19937 rng(seed);
  const DType dt = dts.kv;
  Pool p{Hq, Hkv, D, 0, 0, dt, dts.q, {}, {}, {}, {}, lens};
  p.max_ctx = *std::max_element(lens.begin(), lens.end()) + 3;
  const int64_t total = std::accumulate(lens.begin(), lens.end(), int64_t(0));
  p.slots = total * 2 + 5;
  p.k = Buffer(dt, {p.slots, Hkv, D});
  p.v = Buffer(dt, {p.slots, Hkv, D});
  fill_uniform(p.k.tensor(), rng, -2.f, 2.f);
  fill_uniform(p.v.tensor(), rng);
  std::vector<int32_t> perm(size_t(p.slots));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const int32_t rows = int32_t(lens.size()) + 2;
  p.r2t.assign(size_t(rows * p.max_ctx), -1);
  size_t next = 0;
  for (size_t i = 0; i < lens.size(); ++i) {
    p.req_rows.push_back(rows - 1 - int32_t(i));  // not in sequence order
    for (int32_t j = 0; j < lens[i]; ++j) p.r2t[size_t(p.req_rows.back() * p.max_ctx + j)] = perm[next++];
  }
  return p;
}

// One step: for each listed sequence, its current length and how many of the last tokens
// are queries. Queries are packed in list order.
struct Step {
  std::vector<int32_t> seq_ids, seq_lens, ext_lens;
};

// Queries for every (sequence, position) of the pool, so steps can pick rows from it.
struct QueryBank {
  Buffer q;  // [sum lens, Hq, D]
  std::vector<int64_t> first_row;
};

QueryBank make_queries(const Pool& p, uint32_t seed) {
  std::mt19937 rng(seed);
  QueryBank b;
  int64_t rows = 0;
  for (int32_t l : p.lens) {
    b.first_row.push_back(rows);
    rows += l;
  }
  b.q = Buffer(p.qdt, {rows, p.Hq, p.D});
  fill_uniform(b.q.tensor(), rng);
  return b;
}

// Runs one step (with the active ISA) and returns out as raw rows [T, Hq, D].
Buffer run_step(const Pool& p, const QueryBank& bank, const Step& s, float scale,
                bool use_ref = false) {
  const size_t nb = s.seq_ids.size();
  std::vector<int32_t> req(nb), offs(nb);
  int64_t T = 0;
  for (size_t i = 0; i < nb; ++i) {
    req[i] = p.req_rows[size_t(s.seq_ids[i])];
    offs[i] = int32_t(T);
    T += s.ext_lens[i];
  }
  const int64_t row_bytes = p.Hq * p.D * int64_t(dtype_size(p.qdt));
  Buffer q(p.qdt, {T, p.Hq, p.D}), out(p.qdt, {T, p.Hq, p.D});
  for (size_t i = 0; i < nb; ++i) {
    const int64_t src = bank.first_row[size_t(s.seq_ids[i])] + s.seq_lens[i] - s.ext_lens[i];
    std::memcpy(static_cast<char*>(q.data()) + offs[i] * row_bytes,
                static_cast<const char*>(bank.q.data()) + src * row_bytes,
                size_t(s.ext_lens[i] * row_bytes));
  }
  ops::AttentionBatch b;
  b.batch = int32_t(nb);
  b.req_slots = req.data();
  b.seq_lens = s.seq_lens.data();
  b.extend_lens = s.ext_lens.data();
  b.q_offsets = offs.data();
  b.req_to_token = p.r2t.data();
  b.max_context = p.max_ctx;
  if (use_ref) {
    // Oracle in f32 storage so the comparison sees it unrounded.
    Buffer qf(DType::kF32, {T, p.Hq, p.D}), kf(DType::kF32, {p.slots, p.Hkv, p.D}),
        vf(DType::kF32, {p.slots, p.Hkv, p.D}), of(DType::kF32, {T, p.Hq, p.D});
    convert(q.data(), p.qdt, qf.data(), DType::kF32, size_t(q.tensor().numel()));
    convert(p.k.data(), p.dt, kf.data(), DType::kF32, size_t(kf.tensor().numel()));
    convert(p.v.data(), p.dt, vf.data(), DType::kF32, size_t(vf.tensor().numel()));
    ref::paged_attention(qf.tensor(), kf.tensor(), vf.tensor(), b, scale, of.tensor());
    return of;
  }
  ops::paged_attention(q.tensor(), p.k.tensor(), p.v.tensor(), b, scale, out.tensor());
  return out;
}

TEST(Attention, MatchesReference) {
  uint32_t seed = 1;
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    for (Dts dts : kDts)
      for (int64_t D : {16, 48, 64, 128})
        for (int64_t ratio : {1, 2, 4, 8}) {
          const int64_t Hkv = 2, Hq = Hkv * ratio;
          Pool p = make_pool({1, 70, 200, 129}, Hq, Hkv, D, dts, ++seed);
          const DType dt = dts.q;
          QueryBank bank = make_queries(p, ++seed);
          // Mixed step: a decode, a full prefill, a partial extend, a long decode.
          Step s{{0, 1, 2, 3}, {1, 70, 200, 129}, {1, 70, 37, 1}};
          const float scale = 1.f / std::sqrt(float(D));
          Buffer got = run_step(p, bank, s, scale);
          Buffer want = run_step(p, bank, s, scale, /*use_ref=*/true);
          const double rel = dt == DType::kBF16 ? std::ldexp(1.0, -8) : 0.0;
          const int64_t n = got.tensor().numel();
          int bad = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double g = load_as_f32(got.data(), dt, size_t(i));
            const double w = static_cast<const float*>(want.data())[i];
            if (!(std::fabs(g - w) <= 2e-5 + rel * std::fabs(w)) && bad++ < 5)
              ADD_FAILURE() << cpu::isa_name(isa) << " " << dts_name(dts) << " D=" << D
                            << " ratio=" << ratio << " elem " << i << ": " << g << " vs " << w;
          }
          EXPECT_EQ(bad, 0);
        }
  }
}

void expect_rows_equal(const Buffer& a, int64_t a_row, const Buffer& b, int64_t b_row,
                       int64_t row_bytes, const std::string& what) {
  ASSERT_EQ(0, std::memcmp(static_cast<const char*>(a.data()) + a_row * row_bytes,
                           static_cast<const char*>(b.data()) + b_row * row_bytes, size_t(row_bytes)))
      << what;
}

// Decoding one token at a time, extending in chunks, and one full prefill give the same
// bits for every query.
TEST(Attention, DecodeMatchesExtendBitwise) {
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    for (Dts dts : kDts)
      for (int64_t ratio : {1, 4}) {
        const int32_t L = 150;
        const DType dt = dts.q;
        Pool p = make_pool({L}, 2 * ratio, 2, 64, dts, 42);
        QueryBank bank = make_queries(p, 43);
        const float scale = 0.125f;
        const int64_t row_bytes = p.Hq * p.D * int64_t(dtype_size(dt));
        const Buffer full = run_step(p, bank, Step{{0}, {L}, {L}}, scale);
        const std::string what = fmt::format("{} {} ratio {}", cpu::isa_name(isa), dts_name(dts), ratio);
        for (int32_t i = 0; i < L; ++i) {
          const Buffer one = run_step(p, bank, Step{{0}, {i + 1}, {1}}, scale);
          expect_rows_equal(one, 0, full, i, row_bytes, what + fmt::format(" decode pos {}", i));
        }
        for (int32_t chunk : {17, 64}) {
          for (int32_t done = 0; done < L; done += chunk) {
            const int32_t ext = std::min(chunk, L - done);
            const Buffer part = run_step(p, bank, Step{{0}, {done + ext}, {ext}}, scale);
            for (int32_t r = 0; r < ext; ++r)
              expect_rows_equal(part, r, full, done + r, row_bytes,
                                what + fmt::format(" chunk {} pos {}", chunk, done + r));
          }
        }
      }
  }
}

// A sequence's outputs do not depend on which other sequences share the step.
TEST(Attention, MixedBatchMatchesSingleSequence) {
  for (cpu::Isa isa : testing::supported_isas()) {
    ScopedIsa scoped(isa);
    for (Dts dts : kDts) {
      const DType dt = dts.q;
      Pool p = make_pool({5, 300, 64, 65, 1}, 8, 2, 128, dts, 7);
      QueryBank bank = make_queries(p, 8);
      const float scale = 0.088f;
      const int64_t row_bytes = p.Hq * p.D * int64_t(dtype_size(dt));
      const Step mixed{{3, 1, 0, 4, 2}, {65, 300, 5, 1, 64}, {1, 45, 5, 1, 20}};
      const Buffer all = run_step(p, bank, mixed, scale);
      int64_t row = 0;
      for (size_t i = 0; i < mixed.seq_ids.size(); ++i) {
        const Buffer one = run_step(
            p, bank, Step{{mixed.seq_ids[i]}, {mixed.seq_lens[i]}, {mixed.ext_lens[i]}}, scale);
        for (int32_t r = 0; r < mixed.ext_lens[i]; ++r)
          expect_rows_equal(one, r, all, row + r, row_bytes,
                            fmt::format("{} {} seq {} row {}", cpu::isa_name(isa), dts_name(dts),
                                        mixed.seq_ids[i], r));
        row += mixed.ext_lens[i];
      }
    }
  }
}

TEST(Attention, Avx2AndAvx512AgreeBitwise) {
  if (!cpu::isa_supported(cpu::Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 BF16";
  for (Dts dts : kDts) {
    Pool p = make_pool({100, 3}, 4, 2, 48, dts, 11);
    QueryBank bank = make_queries(p, 12);
    const Step s{{0, 1}, {100, 3}, {30, 3}};
    Buffer r[2];
    int i = 0;
    for (cpu::Isa isa : {cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
      ScopedIsa scoped(isa);
      r[i++] = run_step(p, bank, s, 0.125f);
    }
    EXPECT_EQ(0, std::memcmp(r[0].data(), r[1].data(), r[0].nbytes())) << dts_name(dts);
  }
}

TEST(Attention, RejectsBadArguments) {
  Pool p = make_pool({4}, 4, 2, 16, {DType::kF32, DType::kF32}, 3);
  Buffer q(DType::kF32, {1, 4, 16}), out(DType::kF32, {1, 4, 16}), q3(DType::kF32, {1, 3, 16});
  std::vector<int32_t> req{p.req_rows[0]}, seq{4}, ext{1}, off{0};
  ops::AttentionBatch b{1, req.data(), seq.data(), ext.data(), off.data(), p.r2t.data(), p.max_ctx};
  EXPECT_NO_THROW(ops::paged_attention(q.tensor(), p.k.tensor(), p.v.tensor(), b, 1.f, out.tensor()));
  EXPECT_THROW(ops::paged_attention(q3.tensor(), p.k.tensor(), p.v.tensor(), b, 1.f, q3.tensor()),
               InputError);
  {
    // bf16 q against f32 KV is not a supported combination; f32 q with bf16 KV is.
    Pool pb = make_pool({4}, 4, 2, 16, {DType::kF32, DType::kBF16}, 3);
    Buffer qb(DType::kBF16, {1, 4, 16}), ob(DType::kBF16, {1, 4, 16});
    EXPECT_THROW(ops::paged_attention(qb.tensor(), p.k.tensor(), p.v.tensor(), b, 1.f, ob.tensor()),
                 InputError);
    EXPECT_THROW(ops::paged_attention(q.tensor(), pb.k.tensor(), pb.v.tensor(), b, 1.f, ob.tensor()),
                 InputError);
    std::vector<int32_t> reqb{pb.req_rows[0]};
    ops::AttentionBatch bb{1, reqb.data(), seq.data(), ext.data(), off.data(), pb.r2t.data(), pb.max_ctx};
    EXPECT_NO_THROW(ops::paged_attention(q.tensor(), pb.k.tensor(), pb.v.tensor(), bb, 1.f, out.tensor()));
  }
  seq[0] = 5;  // position 4 has no slot (-1)
  EXPECT_THROW(ops::paged_attention(q.tensor(), p.k.tensor(), p.v.tensor(), b, 1.f, out.tensor()),
               InputError);
  seq[0] = 4;
  ext[0] = 2;  // rows [0, 2) but q has 1 row
  EXPECT_THROW(ops::paged_attention(q.tensor(), p.k.tensor(), p.v.tensor(), b, 1.f, out.tensor()),
               InputError);
}

}  // namespace
}  // namespace sparrow
