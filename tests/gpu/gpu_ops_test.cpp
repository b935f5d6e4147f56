// Every CUDA op against the CPU reference / optimized op on awkward shapes (1, 7, 33, 257
// tokens; odd head counts; N and I not multiples of the tile), bf16 and fp32, plus
// batch-invariance (bit-identity across batch shapes) of the deterministic paths.
// Labelled `gpu` in ctest; skipped when no device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <vector>

#include "kernel_test_util.h"
#include "sparrow/core/cuda/device.h"
#include "sparrow/kernels/logprobs.h"
#include "sparrow/kernels/cuda/ops_cuda.h"
#include "sparrow/kernels/ops.h"
#include "sparrow/kernels/reference/attention_ref.h"
#include "sparrow/kernels/reference/linear_ref.h"

namespace sparrow {
namespace {

using cuda::DeviceBuffer;
using testing::fill_uniform;
using testing::to_f32;

const std::vector<int64_t> kTokens = {1, 7, 33, 257};

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::available()) GTEST_SKIP() << "no CUDA device";
  }
};

DeviceBuffer upload(const Tensor& h) {
  DeviceBuffer d(h.dtype(), h.shape());
  cuda::copy(d.tensor(), h);
  return d;
}
template <typename T>
DeviceBuffer upload_vec(const std::vector<T>& v) {
  DeviceBuffer d(v.size() * sizeof(T));
  cuda::copy_bytes(d.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
Buffer download(const Tensor& d) {
  Buffer h(d.dtype(), d.shape());
  cuda::copy(h.tensor(), d);
  return h;
}
template <typename T>
std::vector<T> download_vec(const void* d, size_t n) {
  std::vector<T> v(n);
  cuda::copy_bytes(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}
// Output buffer poisoned with NaN so unwritten elements fail.
DeviceBuffer poisoned(DType t, Shape s) {
  DeviceBuffer d(t, s);
  SPARROW_CUDA_CHECK(cudaMemset(d.data(), 0xff, d.nbytes()));
  return d;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}
double tol(DType t) { return t == DType::kF32 ? 2e-6 : 8e-3; }

TEST_F(Gpu, EmbeddingExact) {
  std::mt19937 rng(1);
  for (DType dt : {DType::kBF16, DType::kF32})
    for (int64_t T : kTokens) {
      Buffer table(dt, {1000, 72});
      fill_uniform(table.tensor(), rng);
      std::vector<int32_t> ids(static_cast<size_t>(T));
      for (auto& i : ids) i = int32_t(rng() % 1000);
      Buffer ref(dt, {T, 72});
      ops::embedding(table.tensor(), ids.data(), ref.tensor());
      auto dtab = upload(table.tensor());
      auto dids = upload_vec(ids);
      auto out = poisoned(dt, {T, 72});
      ops::embedding(dtab.tensor(), static_cast<int32_t*>(dids.data()), out.tensor());
      EXPECT_EQ(to_f32(download(out.tensor()).tensor()), to_f32(ref.tensor())) << T;
    }
}

TEST_F(Gpu, RmsNormAndAddRmsNorm) {
  std::mt19937 rng(2);
  for (DType dt : {DType::kBF16, DType::kF32})
    for (int64_t T : kTokens)
      for (int64_t H : {int64_t(72), int64_t(2048), int64_t(1000)}) {
        Buffer x(dt, {T, H}), w(dt, {H}), res(DType::kF32, {T, H});
        fill_uniform(x.tensor(), rng, -3, 3);
        fill_uniform(w.tensor(), rng);
        fill_uniform(res.tensor(), rng, -3, 3);
        auto dx = upload(x.tensor()), dw = upload(w.tensor()), dres = upload(res.tensor());
        Buffer y(dt, {T, H});
        ops::rms_norm(x.tensor(), w.tensor(), 1e-6f, y.tensor());
        auto dy = poisoned(dt, {T, H});
        ops::rms_norm(dx.tensor(), dw.tensor(), 1e-6f, dy.tensor());
        EXPECT_LT(rel_err(to_f32(download(dy.tensor()).tensor()), to_f32(y.tensor())), tol(dt)) << T << " " << H;
        // fused residual add (residual in fp32 as the model keeps it), y aliasing x
        ops::add_rms_norm(x.tensor(), res.tensor(), w.tensor(), 1e-6f, x.tensor());
        ops::add_rms_norm(dx.tensor(), dres.tensor(), dw.tensor(), 1e-6f, dx.tensor());
        EXPECT_LT(rel_err(to_f32(download(dres.tensor()).tensor()), to_f32(res.tensor())), 1e-7);
        EXPECT_LT(rel_err(to_f32(download(dx.tensor()).tensor()), to_f32(x.tensor())), tol(dt));
      }
}

TEST_F(Gpu, HeadNormAndRope) {
  std::mt19937 rng(3);
  for (DType dt : {DType::kBF16, DType::kF32})
    for (int64_t T : kTokens)
      for (int64_t heads : {int64_t(1), int64_t(5)})
        for (int64_t D : {int64_t(64), int64_t(128)}) {
          Buffer x(dt, {T, heads, D}), w(dt, {D});
          fill_uniform(x.tensor(), rng, -2, 2);
          fill_uniform(w.tensor(), rng);
          std::vector<int32_t> pos(static_cast<size_t>(T));
          for (auto& p : pos) p = int32_t(rng() % 40000);
          std::vector<float> inv(static_cast<size_t>(D / 2));
          for (int64_t i = 0; i < D / 2; ++i) inv[size_t(i)] = float(std::pow(1e6, -2.0 * double(i) / double(D)));
          auto dx = upload(x.tensor()), dw = upload(w.tensor()), dpos = upload_vec(pos), dinv = upload_vec(inv);
          ops::head_rms_norm(x.tensor(), w.tensor(), 1e-6f);
          ops::head_rms_norm(dx.tensor(), dw.tensor(), 1e-6f);
          ops::rope(x.tensor(), pos.data(), inv.data());
          ops::rope(dx.tensor(), static_cast<int32_t*>(dpos.data()), static_cast<float*>(dinv.data()));
          EXPECT_LT(rel_err(to_f32(download(dx.tensor()).tensor()), to_f32(x.tensor())), tol(dt))
              << T << " " << heads << " " << D;
        }
}

TEST_F(Gpu, SiluMulAndLogSoftmax) {
  std::mt19937 rng(4);
  for (DType dt : {DType::kBF16, DType::kF32})
    for (int64_t T : kTokens) {
      const int64_t I = 136, V = 1003;
      Buffer g(dt, {T, I}), u(dt, {T, I}), y(dt, {T, I}), lg(dt, {T, V}), lp(DType::kF32, {T, V});
      fill_uniform(g.tensor(), rng, -4, 4);
      fill_uniform(u.tensor(), rng);
      fill_uniform(lg.tensor(), rng, -10, 10);
      auto dg = upload(g.tensor()), du = upload(u.tensor()), dlg = upload(lg.tensor());
      auto dy = poisoned(dt, {T, I}), dlp = poisoned(DType::kF32, {T, V});
      ops::silu_mul(g.tensor(), u.tensor(), y.tensor());
      ops::silu_mul(dg.tensor(), du.tensor(), dy.tensor());
      EXPECT_LT(rel_err(to_f32(download(dy.tensor()).tensor()), to_f32(y.tensor())), tol(dt));
      ops::log_softmax(lg.tensor(), lp.tensor());
      ops::log_softmax(dlg.tensor(), dlp.tensor());
      EXPECT_LT(rel_err(to_f32(download(dlp.tensor()).tensor()), to_f32(lp.tensor())), 1e-6);
    }
}

TEST_F(Gpu, RouterTopK) {
  std::mt19937 rng(5);
  for (DType dt : {DType::kF32, DType::kBF16})
    for (int64_t T : kTokens)
      for (auto [E, k] : {std::pair<int64_t, int>{128, 8}, {60, 4}, {7, 7}, {257, 1}})
        for (bool renorm : {true, false}) {
          Buffer lg(dt, {T, E});
          fill_uniform(lg.tensor(), rng, -5, 5);
          if (dt == DType::kBF16 && T > 1) store_from_f32(lg.data(), dt, size_t(E + 3), load_as_f32(lg.data(), dt, size_t(E + 5)));  // a tie
          std::vector<int32_t> ids(static_cast<size_t>(T * k));
          std::vector<float> w(static_cast<size_t>(T * k));
          ops::route_topk_softmax(lg.tensor(), k, renorm, ids.data(), w.data());
          auto dlg = upload(lg.tensor());
          DeviceBuffer dids(ids.size() * 4), dw(w.size() * 4);
          ops::route_topk_softmax(dlg.tensor(), k, renorm, static_cast<int32_t*>(dids.data()), static_cast<float*>(dw.data()));
          EXPECT_EQ(download_vec<int32_t>(dids.data(), ids.size()), ids) << T << " " << E;
          const auto gw = download_vec<float>(dw.data(), w.size());
          for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(gw[i], w[i], 1e-6f * std::max(1.f, w[i]));
        }
}

TEST_F(Gpu, LinearMatchesReference) {
  std::mt19937 rng(6);
  for (DType in_t : {DType::kBF16, DType::kF32})
    for (DType y_t : {DType::kF32, DType::kBF16})
      for (int64_t T : kTokens)
        for (auto [N, K] : {std::pair<int64_t, int64_t>{100, 264}, {2048, 768}, {7, 40}}) {
          Buffer x(in_t, {T, K}), w(in_t, {N, K}), bias(DType::kF32, {N}), ref(y_t, {T, N});
          fill_uniform(x.tensor(), rng);
          fill_uniform(w.tensor(), rng);
          fill_uniform(bias.tensor(), rng);
          auto dx = upload(x.tensor()), dwt = upload(w.tensor()), db = upload(bias.tensor());
          for (auto backend : {ops::cuda::GemmBackend::kCublasLt, ops::cuda::GemmBackend::kFixed})
            for (bool with_bias : {false, true}) {
              if (backend == ops::cuda::GemmBackend::kCublasLt && with_bias) continue;
              const Tensor* bp = with_bias ? &bias.tensor() : nullptr;
              const Tensor* dbp = with_bias ? &db.tensor() : nullptr;
              ref::linear(x.tensor(), w.tensor(), bp, ref.tensor());
              auto y = poisoned(y_t, {T, N});
              ops::cuda::linear_with(backend, dx.tensor(), dwt.tensor(), dbp, y.tensor());
              const double e = rel_err(to_f32(download(y.tensor()).tensor()), to_f32(ref.tensor()));
              EXPECT_LT(e, in_t == DType::kF32 && y_t == DType::kF32 ? 2e-6 : (y_t == DType::kF32 ? 1e-5 : 6e-3))
                  << "T " << T << " N " << N << " K " << K << " backend " << int(backend) << " bias " << with_bias
                  << " in " << dtype_name(in_t) << " y " << dtype_name(y_t);
            }
        }
}

// The skinny decode GEMMs (default mode, T <= 8): against the reference on awkward N / K
// (N not a multiple of the rows per block, K not a multiple of the lanes' chunk stride),
// with and without bias; the 2-8 token kernel batch invariant among 2-8 tokens, the
// one-token kernel against the reference.
TEST_F(Gpu, GemvMatchesReferenceAndIsBatchInvariant) {
  std::mt19937 rng(12);
  for (auto [N, K] : {std::pair<int64_t, int64_t>{1, 8}, {17, 264}, {2049, 2048}, {100, 4104}})
    for (DType y_t : {DType::kF32, DType::kBF16}) {
      const int64_t T = 8;
      Buffer x(DType::kBF16, {T, K}), w(DType::kBF16, {N, K}), bias(DType::kF32, {N}), ref(y_t, {T, N});
      fill_uniform(x.tensor(), rng);
      fill_uniform(w.tensor(), rng);
      fill_uniform(bias.tensor(), rng);
      auto dx = upload(x.tensor()), dw = upload(w.tensor()), db = upload(bias.tensor());
      for (bool with_bias : {false, true}) {
        const Tensor* dbp = with_bias ? &db.tensor() : nullptr;
        ref::linear(x.tensor(), w.tensor(), with_bias ? &bias.tensor() : nullptr, ref.tensor());
        auto y = poisoned(y_t, {T, N});
        ops::cuda::linear_with(ops::cuda::GemmBackend::kGemv, dx.tensor(), dw.tensor(), dbp, y.tensor());
        const auto all = to_f32(download(y.tensor()).tensor());
        EXPECT_LT(rel_err(all, to_f32(ref.tensor())), y_t == DType::kF32 ? 1e-5 : 6e-3) << N << " " << K;
        for (auto [t0, rows] : {std::pair<int64_t, int64_t>{0, 2}, {3, 3}, {5, 3}}) {
          auto part = poisoned(y_t, {rows, N});
          ops::cuda::linear_with(ops::cuda::GemmBackend::kGemv, dx.tensor().slice_rows(t0, t0 + rows), dw.tensor(), dbp,
                                 part.tensor());
          const auto got = to_f32(download(part.tensor()).tensor());
          for (int64_t i = 0; i < rows * N; ++i)
            ASSERT_EQ(f32_bits(got[size_t(i)]), f32_bits(all[size_t(t0 * N + i)])) << N << " " << K << " rows " << rows;
        }
        for (int64_t t0 : {int64_t(0), int64_t(7)}) {
          auto one = poisoned(y_t, {1, N});
          Buffer ref1(y_t, {1, N});
          ref::linear(x.tensor().slice_rows(t0, t0 + 1), w.tensor(), with_bias ? &bias.tensor() : nullptr, ref1.tensor());
          ops::cuda::linear_with(ops::cuda::GemmBackend::kGemv, dx.tensor().slice_rows(t0, t0 + 1), dw.tensor(), dbp,
                                 one.tensor());
          EXPECT_LT(rel_err(to_f32(download(one.tensor()).tensor()), to_f32(ref1.tensor())), y_t == DType::kF32 ? 1e-5 : 6e-3)
              << N << " " << K << " one token";
        }
      }
    }
}

TEST_F(Gpu, FixedLinearIsBatchInvariant) {
  std::mt19937 rng(7);
  const int64_t K = 2048, N = 777, T = 257;
  Buffer x(DType::kBF16, {T, K}), w(DType::kBF16, {N, K});
  fill_uniform(x.tensor(), rng);
  fill_uniform(w.tensor(), rng);
  auto dx = upload(x.tensor()), dw = upload(w.tensor());
  auto full = poisoned(DType::kF32, {T, N});
  ops::cuda::linear_with(ops::cuda::GemmBackend::kFixed, dx.tensor(), dw.tensor(), nullptr, full.tensor());
  const auto all = to_f32(download(full.tensor()).tensor());
  for (int64_t t0 : {int64_t(0), int64_t(5), int64_t(64), int64_t(200)})
    for (int64_t len : {int64_t(1), int64_t(7), int64_t(33)}) {
      if (t0 + len > T) continue;
      auto part = poisoned(DType::kF32, {len, N});
      ops::cuda::linear_with(ops::cuda::GemmBackend::kFixed, dx.tensor().slice_rows(t0, t0 + len), dw.tensor(),
                             nullptr, part.tensor());
      const auto got = to_f32(download(part.tensor()).tensor());
      for (int64_t i = 0; i < len * N; ++i)
        ASSERT_EQ(f32_bits(got[size_t(i)]), f32_bits(all[size_t(t0 * N + i)])) << t0 << " " << len << " " << i;
    }
}

// ---- attention -------------------------------------------------------------------------

struct DevBatch {
  std::vector<int32_t> slots, lens, exts, offs;
  DeviceBuffer d_slots, d_lens, d_exts, d_offs;
  ops::AttentionBatch host, dev;
};

DevBatch make_batch(const std::vector<int32_t>& rows, const std::vector<int32_t>& lens,
                    const std::vector<int32_t>& exts, const int32_t* r2t_host, const void* r2t_dev, int64_t max_ctx) {
  DevBatch b;
  b.slots = rows;
  b.lens = lens;
  b.exts = exts;
  int32_t off = 0;
  for (int32_t e : exts) { b.offs.push_back(off); off += e; }
  b.d_slots = upload_vec(b.slots);
  b.d_lens = upload_vec(b.lens);
  b.d_exts = upload_vec(b.exts);
  b.d_offs = upload_vec(b.offs);
  b.host = {int32_t(rows.size()), b.slots.data(), b.lens.data(), b.exts.data(), b.offs.data(), r2t_host, max_ctx};
  b.dev = {int32_t(rows.size()), static_cast<int32_t*>(b.d_slots.data()), static_cast<int32_t*>(b.d_lens.data()),
           static_cast<int32_t*>(b.d_exts.data()), static_cast<int32_t*>(b.d_offs.data()),
           static_cast<const int32_t*>(r2t_dev), max_ctx};
  return b;
}

TEST_F(Gpu, PagedAttentionExtendAndDecode) {
  std::mt19937 rng(8);
  const std::vector<int32_t> lens = {1, 7, 33, 257, 130};
  const std::vector<int32_t> exts = {1, 7, 5, 257, 1};  // decode, prefill, chunked extend, prefill, decode
  for (DType dt : {DType::kBF16, DType::kF32})
    for (auto [Hq, Hkv, D] : {std::tuple<int64_t, int64_t, int64_t>{10, 2, 64}, {4, 4, 128}, {8, 1, 128}, {3, 1, 40}}) {
      const int64_t max_ctx = 260, slots = 1200;
      Buffer kc(dt, {slots, Hkv, D}), vc(dt, {slots, Hkv, D});
      fill_uniform(kc.tensor(), rng, -2, 2);
      fill_uniform(vc.tensor(), rng);
      std::vector<int32_t> perm(static_cast<size_t>(slots));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      const int32_t nreq = int32_t(lens.size()) + 2;
      std::vector<int32_t> r2t(size_t(nreq * max_ctx), 0), rows;
      size_t next = 0;
      for (size_t i = 0; i < lens.size(); ++i) {
        rows.push_back(nreq - 1 - int32_t(i));
        for (int32_t j = 0; j < lens[i]; ++j) r2t[size_t(rows.back() * max_ctx + j)] = perm[next++];
      }
      const int64_t T = std::accumulate(exts.begin(), exts.end(), int64_t(0));
      Buffer q(dt, {T, Hq, D}), ref(dt, {T, Hq, D});
      fill_uniform(q.tensor(), rng);
      auto dk = upload(kc.tensor()), dv = upload(vc.tensor()), dq = upload(q.tensor()), dr2t = upload_vec(r2t);
      DevBatch b = make_batch(rows, lens, exts, r2t.data(), dr2t.data(), max_ctx);
      const float scale = 1.0f / std::sqrt(float(D));
      ref::paged_attention(q.tensor(), kc.tensor(), vc.tensor(), b.host, scale, ref.tensor());
      auto out = poisoned(dt, {T, Hq, D});
      ops::paged_attention(dq.tensor(), dk.tensor(), dv.tensor(), b.dev, scale, out.tensor());
      const auto all = to_f32(download(out.tensor()).tensor());
      EXPECT_LT(rel_err(all, to_f32(ref.tensor())), dt == DType::kF32 ? 5e-6 : 8e-3) << Hq << " " << Hkv << " " << D;
      // Batch invariance: each sequence alone gives bit-identical rows.
      for (size_t i = 0; i < lens.size(); ++i) {
        DevBatch one = make_batch({rows[i]}, {lens[i]}, {exts[i]}, r2t.data(), dr2t.data(), max_ctx);
        const int64_t off = b.offs[i], n = exts[i];
        auto o1 = poisoned(dt, {n, Hq, D});
        ops::paged_attention(dq.tensor().slice_rows(off, off + n), dk.tensor(), dv.tensor(), one.dev, scale, o1.tensor());
        const auto got = to_f32(download(o1.tensor()).tensor());
        for (int64_t j = 0; j < n * Hq * D; ++j)
          ASSERT_EQ(f32_bits(got[size_t(j)]), f32_bits(all[size_t(off * Hq * D + j)])) << "seq " << i;
      }
    }
}

// Decode steps (one query per sequence) may run the decode-split shape: each context's
// fixed splits in parallel, merged in split order. Same arithmetic as the extend shape:
// bit-identical under deterministic mode, and close to the CPU reference; contexts cross
// split boundaries. The default mode cuts each context by its own length into the splits
// the batch size leaves room for (up to 128 here; contexts 1 to 15000, so splits of one to
// several tiles): against the reference.
TEST_F(Gpu, PagedAttentionDecodeSplitsEqualExtendShape) {
  std::mt19937 rng(11);
  for (int64_t max_ctx : {int64_t(4096), int64_t(20000)})
    for (auto [Hq, Hkv, D] : {std::tuple<int64_t, int64_t, int64_t>{32, 4, 128}, {16, 16, 64}, {64, 4, 128}, {8, 1, 256}}) {
      std::vector<int32_t> lens = {1, 63, 64, 65, 300, 1000, 2049};
      if (max_ctx > 15000) lens.insert(lens.end(), {9000, 15000});
      const std::vector<int32_t> exts(lens.size(), 1);
      const DType dt = DType::kBF16;
      const int64_t slots = 4000;
      Buffer kc(dt, {slots, Hkv, D}), vc(dt, {slots, Hkv, D});
      fill_uniform(kc.tensor(), rng, -2, 2);
      fill_uniform(vc.tensor(), rng);
      const int32_t nreq = int32_t(lens.size());
      std::vector<int32_t> r2t(size_t(nreq * max_ctx), 0), rows;
      for (int32_t i = 0; i < nreq; ++i) {
        rows.push_back(i);
        for (int32_t j = 0; j < lens[size_t(i)]; ++j) r2t[size_t(i * max_ctx + j)] = int32_t(rng() % slots);
      }
      const int64_t T = nreq;
      Buffer q(dt, {T, Hq, D}), ref(dt, {T, Hq, D});
      fill_uniform(q.tensor(), rng);
      auto dk = upload(kc.tensor()), dv = upload(vc.tensor()), dq = upload(q.tensor()), dr2t = upload_vec(r2t);
      DevBatch b = make_batch(rows, lens, exts, r2t.data(), dr2t.data(), max_ctx);
      const float scale = 1.0f / std::sqrt(float(D));
      auto whole = poisoned(dt, {T, Hq, D}), split = poisoned(dt, {T, Hq, D}), flash = poisoned(dt, {T, Hq, D}),
           dyn = poisoned(dt, {T, Hq, D});
      // The bit-identity of the two shapes is deterministic mode's (the default mode's
      // extend shape is attention_flash.cu: one split per block, checked against the
      // reference below).
      cuda::set_deterministic(true);
      ops::paged_attention(dq.tensor(), dk.tensor(), dv.tensor(), b.dev, scale, whole.tensor());
      cuda::set_deterministic(false);
      ops::paged_attention(dq.tensor(), dk.tensor(), dv.tensor(), b.dev, scale, flash.tensor());
      const size_t n = ops::paged_attention_scratch_floats(Device::kCUDA, T, Hq, D, max_ctx);
      ASSERT_GT(n, 0u);
      DeviceBuffer scratch(n * 4);
      ops::AttentionBatch with = b.dev;
      with.scratch = static_cast<float*>(scratch.data());
      cuda::set_deterministic(true);
      ops::paged_attention(dq.tensor(), dk.tensor(), dv.tensor(), with, scale, split.tensor());
      cuda::set_deterministic(false);
      ops::paged_attention(dq.tensor(), dk.tensor(), dv.tensor(), with, scale, dyn.tensor());
      const auto a = to_f32(download(whole.tensor()).tensor()), c = to_f32(download(split.tensor()).tensor());
      for (size_t j = 0; j < a.size(); ++j)
        ASSERT_EQ(f32_bits(a[j]), f32_bits(c[j])) << "ctx " << max_ctx << " heads " << Hq << "/" << Hkv << " D " << D << " at " << j;
      ref::paged_attention(q.tensor(), kc.tensor(), vc.tensor(), b.host, scale, ref.tensor());
      EXPECT_LT(rel_err(c, to_f32(ref.tensor())), 8e-3) << Hq << " " << Hkv << " " << D;
      EXPECT_LT(rel_err(to_f32(download(flash.tensor()).tensor()), to_f32(ref.tensor())), 8e-3)
          << "flash " << Hq << " " << Hkv << " " << D;
      EXPECT_LT(rel_err(to_f32(download(dyn.tensor()).tensor()), to_f32(ref.tensor())), 8e-3)
          << "per-length splits " << Hq << " " << Hkv << " " << D;
    }
}

// The fused q|k|v step (norms, RoPE, KV store) against the plain reference, in a
// decode-sized step (heads spread over blocks) and a prefill-sized one (a block per token),
// for the register kernel's head sizes (64, 128, 256) and the shared-memory kernel's (16,
// 40, whole-projection norms); the first rows of the long step are the short step's bits.
TEST_F(Gpu, AttentionPrepMatchesReference) {
  std::mt19937 rng(13);
  for (auto [Hq, Hkv, D, norm] : {std::tuple<int64_t, int64_t, int64_t, ops::HeadNorm>{32, 4, 128, ops::HeadNorm::kPerHead},
                                  {16, 16, 64, ops::HeadNorm::kProjection}, {4, 2, 16, ops::HeadNorm::kNone},
                                  {6, 2, 40, ops::HeadNorm::kPerHead}, {8, 2, 64, ops::HeadNorm::kNone},
                                  {12, 4, 256, ops::HeadNorm::kPerHead}, {9, 3, 128, ops::HeadNorm::kNone}}) {
    const int64_t n = (Hq + 2 * Hkv) * D, T_short = 5;
    std::vector<float> short_q;
    for (const int64_t T : {T_short, int64_t(600)}) {
      const int64_t slots = T + 11;
      const bool per_head = norm == ops::HeadNorm::kPerHead;
      std::mt19937 data_rng(int(D * 131 + Hq));  // the same rows first in both steps
      Buffer qkv(DType::kBF16, {T, n}), qw(DType::kF32, {per_head ? D : Hq * D}), kw(DType::kF32, {per_head ? D : Hkv * D});
      fill_uniform(qw.tensor(), data_rng, 0.5f, 1.5f);
      fill_uniform(kw.tensor(), data_rng, 0.5f, 1.5f);
      fill_uniform(qkv.tensor(), data_rng, -2, 2);
      std::vector<int32_t> pos(static_cast<size_t>(T)), loc(static_cast<size_t>(T));
      const int32_t first_pos[] = {0, 7, 300, 4095, 12};
      for (int64_t t = 0; t < T; ++t) {
        pos[size_t(t)] = t < 5 ? first_pos[t] : int32_t(rng() % 8192);
        loc[size_t(t)] = int32_t((t * 7 + 3) % slots);  // distinct: 7 and slots are coprime
      }
      ASSERT_NE(slots % 7, 0);
      std::vector<float> inv(static_cast<size_t>(D / 2));
      for (int64_t i = 0; i < D / 2; ++i) inv[size_t(i)] = float(std::pow(1e6, -double(2 * i) / double(D)));
      // Caches start zeroed on both sides: only the rows at `loc` are written.
      Buffer q_ref(DType::kBF16, {T, Hq, D}), k_ref(DType::kBF16, {slots, Hkv, D}), v_ref(DType::kBF16, {slots, Hkv, D});
      const Tensor* qn = norm == ops::HeadNorm::kNone ? nullptr : &qw.tensor();
      const Tensor* kn = norm == ops::HeadNorm::kNone ? nullptr : &kw.tensor();
      auto dqkv = upload(qkv.tensor()), dqw = upload(qw.tensor()), dkw = upload(kw.tensor());
      auto dpos = upload_vec(pos), dloc = upload_vec(loc), dinv = upload_vec(inv);
      auto dq = poisoned(DType::kBF16, {T, Hq, D});
      auto dk = upload(k_ref.tensor()), dv = upload(v_ref.tensor());
      ops::attention_prep(qkv.tensor(), Hq, Hkv, norm, qn, kn, 1e-6f, pos.data(), inv.data(), loc.data(), q_ref.tensor(),
                          k_ref.tensor(), v_ref.tensor());
      const Tensor* dqn = norm == ops::HeadNorm::kNone ? nullptr : &dqw.tensor();
      const Tensor* dkn = norm == ops::HeadNorm::kNone ? nullptr : &dkw.tensor();
      ops::attention_prep(dqkv.tensor(), Hq, Hkv, norm, dqn, dkn, 1e-6f, static_cast<const int32_t*>(dpos.data()),
                          static_cast<const float*>(dinv.data()), static_cast<const int32_t*>(dloc.data()), dq.tensor(),
                          dk.tensor(), dv.tensor());
      auto q = download(dq.tensor());
      EXPECT_LT(rel_err(to_f32(q.tensor()), to_f32(q_ref.tensor())), 8e-3) << Hq << " " << D << " T " << T;
      EXPECT_LT(rel_err(to_f32(download(dk.tensor()).tensor()), to_f32(k_ref.tensor())), 8e-3) << Hq << " " << D << " T " << T;
      EXPECT_LT(rel_err(to_f32(download(dv.tensor()).tensor()), to_f32(v_ref.tensor())), 8e-3) << Hq << " " << D << " T " << T;
      const std::vector<float> first = to_f32(q.tensor().slice_rows(0, T_short));
      if (T == T_short) {
        short_q = first;
      } else {
        ASSERT_EQ(first.size(), short_q.size());
        for (size_t j = 0; j < first.size(); ++j)
          ASSERT_EQ(f32_bits(first[j]), f32_bits(short_q[j])) << Hq << " " << D << " at " << j;
      }
    }
  }
}

// A prefill step of more than 65535 tokens (grid y's limit): the kernels that index tokens
// by block put them on grid x (attention_prep's register kernel, moe_combine).
TEST_F(Gpu, StepsLongerThanGridYLimit) {
  std::mt19937 rng(17);
  const int64_t T = 70000, Hq = 2, Hkv = 1, D = 64, slots = T + 3;
  Buffer qkv(DType::kBF16, {T, (Hq + 2 * Hkv) * D});
  fill_uniform(qkv.tensor(), rng, -2, 2);
  std::vector<int32_t> pos(static_cast<size_t>(T)), loc(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = int32_t(t % 4096), loc[size_t(t)] = int32_t(T - 1 - t);
  std::vector<float> inv(static_cast<size_t>(D / 2));
  for (int64_t i = 0; i < D / 2; ++i) inv[size_t(i)] = float(std::pow(1e6, -double(2 * i) / double(D)));
  Buffer q_ref(DType::kBF16, {T, Hq, D}), k_ref(DType::kBF16, {slots, Hkv, D}), v_ref(DType::kBF16, {slots, Hkv, D});
  auto dqkv = upload(qkv.tensor()), dpos = upload_vec(pos), dloc = upload_vec(loc), dinv = upload_vec(inv);
  auto dq = poisoned(DType::kBF16, {T, Hq, D});
  auto dk = upload(k_ref.tensor()), dv = upload(v_ref.tensor());
  ops::attention_prep(qkv.tensor(), Hq, Hkv, ops::HeadNorm::kNone, nullptr, nullptr, 1e-6f, pos.data(), inv.data(),
                      loc.data(), q_ref.tensor(), k_ref.tensor(), v_ref.tensor());
  ops::attention_prep(dqkv.tensor(), Hq, Hkv, ops::HeadNorm::kNone, nullptr, nullptr, 1e-6f,
                      static_cast<const int32_t*>(dpos.data()), static_cast<const float*>(dinv.data()),
                      static_cast<const int32_t*>(dloc.data()), dq.tensor(), dk.tensor(), dv.tensor());
  EXPECT_LT(rel_err(to_f32(download(dq.tensor()).tensor()), to_f32(q_ref.tensor())), 8e-3);
  EXPECT_LT(rel_err(to_f32(download(dk.tensor()).tensor()), to_f32(k_ref.tensor())), 8e-3);
  EXPECT_LT(rel_err(to_f32(download(dv.tensor()).tensor()), to_f32(v_ref.tensor())), 8e-3);

  const int k = 2;
  for (const int64_t H : {int64_t(8), int64_t(6)}) {  // 16-byte and scalar columns
    Buffer slot_out(DType::kF32, {T * k, H}), ref(DType::kF32, {T, H});
    fill_uniform(slot_out.tensor(), rng);
    auto dslot = upload(slot_out.tensor());
    auto out = poisoned(DType::kF32, {T, H});
    ops::moe_combine(slot_out.tensor(), k, nullptr, nullptr, ref.tensor());
    ops::moe_combine(dslot.tensor(), k, nullptr, nullptr, out.tensor());
    EXPECT_LT(rel_err(to_f32(download(out.tensor()).tensor()), to_f32(ref.tensor())), 1e-6) << "H " << H;
  }
}

// ---- MoE -------------------------------------------------------------------------------

TEST_F(Gpu, MoeLayerMatchesCpuComposition) {
  std::mt19937 rng(9);
  const int64_t E = 16, H = 256, I = 136;
  const int k = 4;
  Buffer w13(DType::kBF16, {E, 2 * I, H}), w2(DType::kBF16, {E, H, I}), router(DType::kBF16, {E, H});
  fill_uniform(w13.tensor(), rng, -0.1f, 0.1f);
  fill_uniform(w2.tensor(), rng, -0.1f, 0.1f);
  fill_uniform(router.tensor(), rng, -0.1f, 0.1f);
  auto dw13 = upload(w13.tensor()), dw2 = upload(w2.tensor()), drouter = upload(router.tensor());

  DeviceBuffer wsbuf(ops::cuda::moe_workspace_bytes(300, k, E, H, I) + (1 << 20));
  Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
  cuda::set_deterministic(true);
  for (int64_t T : {int64_t(1), int64_t(7), int64_t(33), int64_t(257), int64_t(300)}) {
    Buffer x(DType::kBF16, {T, H});
    fill_uniform(x.tensor(), rng);
    auto dx = upload(x.tensor());
    auto out = poisoned(DType::kBF16, {T, H});
    ops::cuda::moe_forward(dx.tensor(), drouter.tensor(), dw13.tensor(), dw2.tensor(), k, true, ws, out.tensor());
    // Routing on the CPU from the same logits (fixed-kernel router GEMM vs CPU GEMM can
    // differ in the last bit, so route from the GPU logits to compare the experts exactly).
    auto dlog = poisoned(DType::kF32, {T, E});
    ops::linear(dx.tensor(), drouter.tensor(), nullptr, dlog.tensor());
    Buffer logits = download(dlog.tensor());
    std::vector<int32_t> ids(static_cast<size_t>(T * k));
    std::vector<float> wts(static_cast<size_t>(T * k));
    ops::route_topk_softmax(logits.tensor(), k, true, ids.data(), wts.data());
    Buffer ref(DType::kBF16, {T, H}), g(DType::kBF16, {1, I}), u(DType::kBF16, {1, I}), y(DType::kF32, {1, H});
    std::vector<float> acc(static_cast<size_t>(H));
    for (int64_t t = 0; t < T; ++t) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int s = 0; s < k; ++s) {
        const int64_t e = ids[size_t(t * k + s)];
        const Tensor xe = x.tensor().slice_rows(t, t + 1);
        const Tensor we = Tensor(static_cast<uint16_t*>(w13.data()) + e * 2 * I * H, DType::kBF16, {2 * I, H});
        ops::linear(xe, we.slice_rows(0, I), nullptr, g.tensor());
        ops::linear(xe, we.slice_rows(I, 2 * I), nullptr, u.tensor());
        ops::silu_mul(g.tensor(), u.tensor(), g.tensor());
        const Tensor wd = Tensor(static_cast<uint16_t*>(w2.data()) + e * H * I, DType::kBF16, {H, I});
        ops::linear(g.tensor(), wd, nullptr, y.tensor());
        for (int64_t i = 0; i < H; ++i) acc[size_t(i)] += static_cast<const float*>(y.data())[i] * wts[size_t(t * k + s)];
      }
      convert(acc.data(), DType::kF32, ref.tensor().row_ptr(t), DType::kBF16, size_t(H));
    }
    const auto got = to_f32(download(out.tensor()).tensor());
    EXPECT_LT(rel_err(got, to_f32(ref.tensor())), 1e-2) << T;
    // Batch invariance in deterministic mode: the first token alone gives the same row.
    auto one = poisoned(DType::kBF16, {1, H});
    ops::cuda::moe_forward(dx.tensor().slice_rows(0, 1), drouter.tensor(), dw13.tensor(), dw2.tensor(), k, true, ws, one.tensor());
    const auto got1 = to_f32(download(one.tensor()).tensor());
    for (int64_t i = 0; i < H; ++i) ASSERT_EQ(f32_bits(got1[size_t(i)]), f32_bits(got[size_t(i)])) << T << " " << i;
  }
  cuda::set_deterministic(false);
}

// ops::fused_moe at decode sizes: the skinny two-kernel path (default mode) against the CPU
// reference (route + moe_experts + moe_combine) from the same logits, with and without the
// gated shared expert, tokens sharing experts, k from 1 to 8, H and I not multiples of a
// warp's chunk span, and H / I wider than one bulk-copy segment (2048 / 1024). Each token's
// bits do not depend on the other tokens of the step.
TEST_F(Gpu, FusedMoeSkinnyMatchesReference) {
  std::mt19937 rng(21);
  struct Shape3 { int64_t E, H, I; int k; };
  for (const Shape3 sh : {Shape3{16, 256, 136, 4}, Shape3{6, 264, 40, 5}, Shape3{128, 2048, 768, 8}, Shape3{8, 64, 24, 1},
                          Shape3{8, 2056, 1032, 3}}) {
    const int64_t E = sh.E, H = sh.H, I = sh.I;
    const int k = sh.k;
    Buffer w13(DType::kBF16, {E, 2 * I, H}), w2(DType::kBF16, {E, H, I});
    fill_uniform(w13.tensor(), rng, -0.1f, 0.1f);
    fill_uniform(w2.tensor(), rng, -0.1f, 0.1f);
    auto dw13 = upload(w13.tensor()), dw2 = upload(w2.tensor());
    DeviceBuffer wsbuf(ops::cuda::moe_workspace_bytes(8, k, E, H, I) + (1 << 20));
    Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
    Arena cpu_ws;
    for (int64_t T = 1; T <= 4; ++T) {
      for (bool shared : {false, true}) {
        Buffer x(DType::kBF16, {T, H}), logits(DType::kF32, {T, E}), so(DType::kF32, {T, H}), sl(DType::kF32, {T, 1});
        fill_uniform(x.tensor(), rng);
        fill_uniform(logits.tensor(), rng, -3, 3);
        if (T > 1 && E > 4)  // token 1 routes like token 0: two tokens share every expert
          std::copy_n(static_cast<const float*>(logits.data()), E, static_cast<float*>(logits.data()) + E);
        fill_uniform(so.tensor(), rng);
        fill_uniform(sl.tensor(), rng, -2, 2);
        auto dx = upload(x.tensor()), dlog = upload(logits.tensor()), dso = upload(so.tensor()), dsl = upload(sl.tensor());
        ASSERT_TRUE(ops::cuda::moe_skinny_eligible(dx.tensor(), E, k));
        auto out = poisoned(DType::kBF16, {T, H});
        ops::fused_moe(dx.tensor(), dlog.tensor(), k, true, dw13.tensor(), dw2.tensor(), shared ? &dso.tensor() : nullptr,
                       shared ? &dsl.tensor() : nullptr, ws, out.tensor());
        Buffer ref(DType::kBF16, {T, H});
        ops::fused_moe(x.tensor(), logits.tensor(), k, true, w13.tensor(), w2.tensor(), shared ? &so.tensor() : nullptr,
                       shared ? &sl.tensor() : nullptr, cpu_ws, ref.tensor());
        const std::vector<float> got = to_f32(download(out.tensor()).tensor());
        EXPECT_LT(rel_err(got, to_f32(ref.tensor())), 1e-2)
            << "E " << E << " H " << H << " I " << I << " k " << k << " T " << T << " shared " << shared;
        if (T > 1) {  // the last token alone
          auto alone = poisoned(DType::kBF16, {1, H});
          const Tensor so1 = dso.tensor().slice_rows(T - 1, T), sl1 = dsl.tensor().slice_rows(T - 1, T);
          ops::fused_moe(dx.tensor().slice_rows(T - 1, T), dlog.tensor().slice_rows(T - 1, T), k, true, dw13.tensor(),
                         dw2.tensor(), shared ? &so1 : nullptr, shared ? &sl1 : nullptr, ws, alone.tensor());
          const std::vector<float> one = to_f32(download(alone.tensor()).tensor());
          for (int64_t i = 0; i < H; ++i)
            ASSERT_EQ(f32_bits(one[size_t(i)]), f32_bits(got[size_t((T - 1) * H + i)])) << "T " << T << " column " << i;
        }
      }
    }
  }
}

// The default mode's expert GEMMs on both kernels (gemm.cu's mma.sync, gemm_wgmma.cu's
// wgmma) against the CPU reference: K (= H) and the gate_up / down widths not multiples of
// the 64 / 128 / 256 tiles, experts with several row tiles (either kernel's), tokens routed to one expert
// twice, a slice of the experts (expert parallelism), and the real Qwen3-30B-A3B shape.
TEST_F(Gpu, MoeExpertsBothKernelsMatchReference) {
  std::mt19937 rng(41);
  struct Case { int64_t E, H, I; int k; int64_t T, e0, n; };
  for (const Case c : {Case{8, 520, 200, 2, 300, 0, 8}, Case{8, 520, 200, 2, 5, 0, 8}, Case{16, 264, 136, 4, 97, 4, 8}, Case{4, 264, 136, 2, 500, 0, 4},
                       Case{128, 2048, 768, 8, 16, 0, 128},
                       // 512 (row tile, column tile) pairs: several per CTA of the persistent
                       // wgmma kernel, whose stage ring then runs across tiles (and K of 3 tiles
                       // in down: fewer than its stages)
                       Case{16, 264, 136, 4, 8000, 0, 16},
                       // 33200 pairs: more than moe_group stages in shared memory
                       Case{16, 264, 136, 4, 8300, 0, 16}}) {
    Buffer w13(DType::kBF16, {c.n, 2 * c.I, c.H}), w2(DType::kBF16, {c.n, c.H, c.I}), x(DType::kBF16, {c.T, c.H});
    fill_uniform(w13.tensor(), rng, -0.1f, 0.1f);
    fill_uniform(w2.tensor(), rng, -0.1f, 0.1f);
    fill_uniform(x.tensor(), rng);
    std::vector<int32_t> ids(size_t(c.T * c.k));
    std::vector<float> wts(ids.size());
    std::uniform_real_distribution<float> uw(0.1f, 1.0f);
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = int32_t((i * 7 + i / 5) % c.E);
      if (i % 13 == 1) ids[i] = ids[i - 1];  // a token's two slots on one expert
      wts[i] = uw(rng);
    }
    auto dx = upload(x.tensor()), d13 = upload(w13.tensor()), d2 = upload(w2.tensor()), dids = upload_vec(ids),
         dw = upload_vec(wts);
    DeviceBuffer wsbuf(ops::cuda::moe_workspace_bytes(c.T, c.k, c.n, c.H, c.I) + (1 << 20));
    Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
    Buffer ref(DType::kF32, {c.T * c.k, c.H});
    Arena cpu_ws;
    ops::moe_experts(x.tensor(), ids.data(), wts.data(), c.k, w13.tensor(), w2.tensor(), cpu_ws, ref.tensor(), c.e0, c.E);
    const std::vector<float> want = to_f32(ref.tensor());
    std::vector<float> by_kernel[2];
    for (int kernel = 0; kernel < 2; ++kernel) {
      ops::cuda::set_moe_gemm(kernel ? ops::cuda::MoeGemm::kWgmma : ops::cuda::MoeGemm::kMma);
      auto out = poisoned(DType::kF32, {c.T * c.k, c.H});
      ops::cuda::moe_experts(dx.tensor(), static_cast<const int32_t*>(dids.data()), static_cast<const float*>(dw.data()),
                             c.k, d13.tensor(), d2.tensor(), ws, out.tensor(), c.e0, c.E);
      by_kernel[kernel] = download_vec<float>(out.data(), size_t(c.T * c.k * c.H));
      EXPECT_LT(rel_err(by_kernel[kernel], want), 2e-3)
          << (kernel ? "wgmma" : "mma") << " E " << c.E << " H " << c.H << " I " << c.I << " T " << c.T << " e0 " << c.e0;
    }
    ops::cuda::set_moe_gemm(ops::cuda::MoeGemm::kAuto);
    EXPECT_LT(rel_err(by_kernel[1], by_kernel[0]), 1e-3) << "E " << c.E << " T " << c.T;
    // Pairs of experts outside the slice stay zero (moe_experts clears them) on both kernels.
    for (size_t pr = 0; pr < ids.size(); ++pr) {
      if (ids[pr] >= c.e0 && ids[pr] < c.e0 + c.n) continue;
      for (int kernel = 0; kernel < 2; ++kernel) ASSERT_EQ(by_kernel[kernel][pr * size_t(c.H)], 0.0f) << pr;
    }
  }
}

// fused_moe where the wgmma GEMMs run keeps the weighted slot values in bf16 between the
// down GEMM and the combine (ops::cuda::moe_slot_dtype); the mma.sync path keeps f32. Both
// against the CPU composition (routing from the GPU's logits), with and without a gated
// shared expert, and at a size the default choice sends to wgmma on its own.
TEST_F(Gpu, FusedMoeBf16SlotValuesMatchReference) {
  std::mt19937 rng(47);
  const int64_t E = 16, H = 264, I = 136;
  const int k = 4;
  Buffer w13(DType::kBF16, {E, 2 * I, H}), w2(DType::kBF16, {E, H, I});
  fill_uniform(w13.tensor(), rng, -0.1f, 0.1f);
  fill_uniform(w2.tensor(), rng, -0.1f, 0.1f);
  auto d13 = upload(w13.tensor()), d2 = upload(w2.tensor());
  for (const int64_t T : {int64_t(300), int64_t(2100)}) {
    for (const bool shared : {false, true}) {
      Buffer x(DType::kBF16, {T, H}), logits(DType::kF32, {T, E}), sh(DType::kF32, {T, H}), shl(DType::kF32, {T});
      fill_uniform(x.tensor(), rng);
      fill_uniform(logits.tensor(), rng, -3.0f, 3.0f);
      fill_uniform(sh.tensor(), rng, -0.5f, 0.5f);
      fill_uniform(shl.tensor(), rng, -2.0f, 2.0f);
      auto dx = upload(x.tensor()), dlog = upload(logits.tensor()), dsh = upload(sh.tensor()), dshl = upload(shl.tensor());
      std::vector<int32_t> ids(size_t(T * k));
      std::vector<float> wts(ids.size());
      ops::route_topk_softmax(logits.tensor(), k, true, ids.data(), wts.data());
      Buffer slots(DType::kF32, {T * k, H}), ref(DType::kBF16, {T, H});
      Arena cpu_ws;
      ops::moe_experts(x.tensor(), ids.data(), wts.data(), k, w13.tensor(), w2.tensor(), cpu_ws, slots.tensor());
      const Tensor sht = sh.tensor(), shlt = shl.tensor();
      ops::moe_combine(slots.tensor(), k, shared ? &sht : nullptr, shared ? &shlt : nullptr, ref.tensor());
      const std::vector<float> want = to_f32(ref.tensor());
      DeviceBuffer wsbuf(ops::cuda::moe_workspace_bytes(T, k, E, H, I) + (1 << 20));
      Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
      const Tensor dsht = dsh.tensor(), dshlt = dshl.tensor();
      std::vector<float> got[3];
      const ops::cuda::MoeGemm kinds[3] = {ops::cuda::MoeGemm::kMma, ops::cuda::MoeGemm::kWgmma, ops::cuda::MoeGemm::kAuto};
      for (int v = 0; v < 3; ++v) {
        ops::cuda::set_moe_gemm(kinds[v]);
        auto out = poisoned(DType::kBF16, {T, H});
        ops::cuda::fused_moe(dx.tensor(), dlog.tensor(), k, true, d13.tensor(), d2.tensor(), shared ? &dsht : nullptr,
                             shared ? &dshlt : nullptr, ws, out.tensor());
        got[v] = to_f32(download(out.tensor()).tensor());
        EXPECT_LT(rel_err(got[v], want), 1e-2) << "kind " << v << " T " << T << " shared " << shared;
      }
      ops::cuda::set_moe_gemm(ops::cuda::MoeGemm::kAuto);
      EXPECT_EQ(ops::cuda::moe_slot_dtype(T * k), T * k >= ops::cuda::kMoeWgmmaMinPairs ? DType::kBF16 : DType::kF32);
      EXPECT_LT(rel_err(got[1], got[0]), 1e-2) << "bf16 slots vs f32 slots, T " << T;
    }
  }
  // Deterministic mode keeps the fixed GEMM (and f32 slots) however many pairs there are.
  cuda::set_deterministic(true);
  EXPECT_FALSE(ops::cuda::moe_gemm_uses_wgmma(int64_t(1) << 20));
  EXPECT_EQ(ops::cuda::moe_slot_dtype(int64_t(1) << 20), DType::kF32);
  cuda::set_deterministic(false);
}

// Deterministic leaf tree on the GPU: linear_leaves is the fixed-config GEMM of each K
// block followed by the pairwise tree, and a rank holding half of K (half the leaves) gives
// exactly the left / right subtree: their sum is the whole result, bit for bit.
TEST_F(Gpu, LinearLeavesSplitsIntoRankSubtrees) {
  std::mt19937 rng(31);
  for (int64_t T : {int64_t(1), int64_t(5), int64_t(300)}) {
    const int64_t K = 256, N = 72;
    Buffer x(DType::kBF16, {T, K}), w(DType::kBF16, {N, K});
    fill_uniform(x.tensor(), rng);
    fill_uniform(w.tensor(), rng, -0.2f, 0.2f);
    auto dx = upload(x.tensor()), dw = upload(w.tensor());
    DeviceBuffer wsbuf(ops::linear_leaves_workspace_bytes(Device::kCUDA, N, 8) + (1 << 20));
    Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
    for (int L : {2, 4, 8}) {
      auto whole = poisoned(DType::kF32, {T, N}), left = poisoned(DType::kF32, {T, N}), right = poisoned(DType::kF32, {T, N});
      ops::linear_leaves(dx.tensor(), dw.tensor(), L, whole.tensor(), &ws);
      ops::linear_leaves(dx.tensor().slice_cols(0, K / 2), dw.tensor().slice_cols(0, K / 2), L / 2, left.tensor(), &ws);
      ops::linear_leaves(dx.tensor().slice_cols(K / 2, K), dw.tensor().slice_cols(K / 2, K), L / 2, right.tensor(), &ws);
      const std::vector<float> a = download_vec<float>(whole.data(), size_t(T * N)), l = download_vec<float>(left.data(), size_t(T * N)),
                               r = download_vec<float>(right.data(), size_t(T * N));
      int64_t differ = 0;
      for (size_t i = 0; i < a.size(); ++i) differ += a[i] != l[i] + r[i];
      EXPECT_EQ(differ, 0) << "T " << T << " leaves " << L;
      Buffer ref(DType::kF32, {T, N});
      ops::linear(x.tensor(), w.tensor(), nullptr, ref.tensor());
      EXPECT_LT(rel_err(a, to_f32(ref.tensor())), 1e-5) << "T " << T << " leaves " << L;
    }
  }
}

// Deterministic MoE values: unweighted per-slot values whose down projection is the leaf
// tree over I; a MoE-TP rank (half of I, half the leaves) gives a subtree, the two add up to
// the whole bit for bit, other ranks' experts give -0.0, and the values match the reference.
TEST_F(Gpu, MoeExpertValuesSplitIntoRankSubtrees) {
  std::mt19937 rng(37);
  const int64_t E = 8, H = 128, I = 64, T = 300;  // T above one chunk
  const int k = 2, L = 4;
  Buffer w13(DType::kBF16, {E, 2 * I, H}), w2(DType::kBF16, {E, H, I}), x(DType::kBF16, {T, H});
  fill_uniform(w13.tensor(), rng, -0.1f, 0.1f);
  fill_uniform(w2.tensor(), rng, -0.1f, 0.1f);
  fill_uniform(x.tensor(), rng);
  std::vector<int32_t> ids(size_t(T * k));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7 + i / 3) % E);
  // The halves of I as a MoE-TP rank holds them: gate / up rows and down columns.
  Buffer w13h[2] = {Buffer(DType::kBF16, {E, I, H}), Buffer(DType::kBF16, {E, I, H})};
  Buffer w2h[2] = {Buffer(DType::kBF16, {E, H, I / 2}), Buffer(DType::kBF16, {E, H, I / 2})};
  for (int r = 0; r < 2; ++r)
    for (int64_t e = 0; e < E; ++e) {
      const auto* src = static_cast<const uint16_t*>(w13.data()) + e * 2 * I * H;
      auto* dst = static_cast<uint16_t*>(w13h[r].data()) + e * I * H;
      std::memcpy(dst, src + r * (I / 2) * H, size_t(I / 2 * H) * 2);                 // gate rows
      std::memcpy(dst + (I / 2) * H, src + (I + r * (I / 2)) * H, size_t(I / 2 * H) * 2);  // up rows
      for (int64_t n = 0; n < H; ++n)
        std::memcpy(static_cast<uint16_t*>(w2h[r].data()) + (e * H + n) * (I / 2),
                    static_cast<const uint16_t*>(w2.data()) + (e * H + n) * I + r * (I / 2), size_t(I / 2) * 2);
    }
  auto dx = upload(x.tensor()), dids = upload_vec(ids);
  DeviceBuffer wsbuf(ops::moe_expert_values_workspace_bytes(k, E, H, I, L) + (8 << 20));
  Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
  auto run = [&](const Tensor& a13, const Tensor& a2, int leaves, int64_t e0) {
    auto d13 = upload(a13), d2 = upload(a2);
    auto v = poisoned(DType::kF32, {T * k, H});
    ops::moe_expert_values(dx.tensor(), static_cast<const int32_t*>(dids.data()), k, d13.tensor(), d2.tensor(), leaves, e0,
                           E, ws, v.tensor());
    return download_vec<float>(v.data(), size_t(T * k * H));
  };
  const std::vector<float> whole = run(w13.tensor(), w2.tensor(), L, 0);
  const std::vector<float> left = run(w13h[0].tensor(), w2h[0].tensor(), L / 2, 0);
  const std::vector<float> right = run(w13h[1].tensor(), w2h[1].tensor(), L / 2, 0);
  int64_t differ = 0;
  for (size_t i = 0; i < whole.size(); ++i) differ += whole[i] != left[i] + right[i];
  EXPECT_EQ(differ, 0) << "the MoE-TP halves do not add up to the whole values";
  // Experts [4, 8) only: pairs of experts 0..3 are -0.0, the others the whole values.
  const std::vector<float> upper = run(w13.tensor().slice_rows(4, 8), w2.tensor().slice_rows(4, 8), L, 4);
  for (int64_t p = 0; p < T * k; ++p)
    for (int64_t i = 0; i < H; i += 17) {
      const float got = upper[size_t(p * H + i)];
      if (ids[size_t(p)] < 4) EXPECT_TRUE(got == 0.0f && std::signbit(got)) << p << " " << i;
      else EXPECT_EQ(got, whole[size_t(p * H + i)]) << p << " " << i;
    }
  // Against the reference pair loop with unit weights.
  std::vector<float> ones(size_t(T * k), 1.0f);
  Buffer ref(DType::kF32, {T * k, H});
  Arena cpu_ws;
  ops::moe_experts(x.tensor(), ids.data(), ones.data(), k, w13.tensor(), w2.tensor(), cpu_ws, ref.tensor());
  EXPECT_LT(rel_err(whole, to_f32(ref.tensor())), 2e-3);
}

// Expert parallelism: ops::fused_moe over a slice of the experts (experts [e0, e0 + E/parts)
// of the router's E, ids global) sums only the local experts' slots; the slices' outputs add
// up to the whole block. Against the CPU reference on the same slice, at decode and prefill
// sizes (the grouped path: the skinny kernels need every expert).
TEST_F(Gpu, FusedMoeLocalExpertsMatchReferenceAndSumToWhole) {
  std::mt19937 rng(23);
  const int64_t E = 16, H = 256, I = 136;
  const int k = 4, parts = 4;
  Buffer w13(DType::kBF16, {E, 2 * I, H}), w2(DType::kBF16, {E, H, I});
  fill_uniform(w13.tensor(), rng, -0.1f, 0.1f);
  fill_uniform(w2.tensor(), rng, -0.1f, 0.1f);
  DeviceBuffer wsbuf(ops::cuda::moe_workspace_bytes(64, k, E, H, I) + (1 << 20));
  Arena ws("test", wsbuf.data(), wsbuf.nbytes(), Device::kCUDA);
  Arena cpu_ws;
  for (int64_t T : {int64_t(1), int64_t(3), int64_t(64)}) {
    Buffer x(DType::kBF16, {T, H}), logits(DType::kF32, {T, E});
    fill_uniform(x.tensor(), rng);
    fill_uniform(logits.tensor(), rng, -3, 3);
    auto dx = upload(x.tensor()), dlog = upload(logits.tensor());
    std::vector<float> sum(size_t(T * H), 0.0f);
    for (int part = 0; part < parts; ++part) {
      const int64_t e0 = part * (E / parts), n = E / parts;
      Buffer lw13(DType::kBF16, {n, 2 * I, H}), lw2(DType::kBF16, {n, H, I});
      std::memcpy(lw13.data(), w13.tensor().slice_rows(e0, e0 + n).data(), lw13.nbytes());
      std::memcpy(lw2.data(), w2.tensor().slice_rows(e0, e0 + n).data(), lw2.nbytes());
      auto dw13 = upload(lw13.tensor()), dw2 = upload(lw2.tensor());
      auto out = poisoned(DType::kF32, {T, H});
      ops::fused_moe(dx.tensor(), dlog.tensor(), k, true, dw13.tensor(), dw2.tensor(), nullptr, nullptr, ws, out.tensor(), e0);
      Buffer ref(DType::kF32, {T, H});
      ops::fused_moe(x.tensor(), logits.tensor(), k, true, lw13.tensor(), lw2.tensor(), nullptr, nullptr, cpu_ws,
                     ref.tensor(), e0);
      const std::vector<float> got = to_f32(download(out.tensor()).tensor());
      EXPECT_LT(rel_err(got, to_f32(ref.tensor())), 2e-3) << "T " << T << " experts from " << e0;
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += got[i];
    }
    Buffer whole(DType::kF32, {T, H});
    ops::fused_moe(x.tensor(), logits.tensor(), k, true, w13.tensor(), w2.tensor(), nullptr, nullptr, cpu_ws, whole.tensor());
    EXPECT_LT(rel_err(sum, to_f32(whole.tensor())), 2e-3) << "T " << T << ": the slices do not add up to the block";
  }
}

// The device argmax picks what the CPU scan picks (ties to the lower id, -inf rows, NaN
// after index 0), on vocabulary-sized rows with the maximum repeated far apart.
TEST_F(Gpu, ArgmaxRowsMatchesCpu) {
  std::mt19937 rng(5);
  const int64_t R = 7, V = 151936;
  Buffer x(DType::kF32, {R, V});
  fill_uniform(x.tensor(), rng, -4, 4);
  float* d = static_cast<float*>(x.data());
  d[0 * V + 100] = 9.f, d[0 * V + 150000] = 9.f;                      // tie: 100
  for (int64_t i = 0; i < V; ++i) d[1 * V + i] = -INFINITY;           // all -inf: 0
  d[2 * V + 5] = NAN, d[2 * V + 7] = 20.f;                            // NaN skipped
  d[3 * V + V - 1] = 50.f;                                            // last index
  auto dx = upload(x.tensor());
  DeviceBuffer dout(size_t(R) * sizeof(int32_t));
  ops::argmax_rows(dx.tensor(), static_cast<int32_t*>(dout.data()));
  std::vector<int32_t> want(static_cast<size_t>(R));
  ops::argmax_rows(x.tensor(), want.data());
  EXPECT_EQ(download_vec<int32_t>(dout.data(), size_t(R)), want);
  EXPECT_EQ(want[0], 100);
  EXPECT_EQ(want[1], 0);
  EXPECT_EQ(want[2], 7);
  EXPECT_EQ(want[3], V - 1);
}

// The device sampler (cuts from the shortlist or by radix select, fixed-point masses)
// draws the token the CPU's sort-based definition draws, row by row: every mix of
// temperature / top-k / top-p / min-p, cuts that fall inside runs of tied logits, peaked
// rows where most tokens have no mass, greedy rows, top_k beyond the vocabulary, and
// forced rows among them.
TEST_F(Gpu, SampleRowsMatchesCpu) {
  std::mt19937 rng(9);
  const int64_t V = 151936, kPositions = 12;
  // kind 0 uniform, 1 tied, 2 peaked, 3 peaks on 13 levels (ties inside a small top-k)
  struct Case { float t; int32_t k; float p, min_p; int kind; };
  const std::vector<Case> cases = {
      {1.0f, -1, 1.0f, 0.0f, 0}, {0.7f, 50, 1.0f, 0.0f, 0},   {1.0f, -1, 0.9f, 0.0f, 0},  {1.3f, 1000, 0.8f, 0.0f, 0},
      {1.0f, -1, 1.0f, 0.05f, 0}, {0.5f, 20, 0.5f, 0.1f, 0},  {1.0f, 37, 0.37f, 0.0f, 1}, {0.0f, -1, 1.0f, 0.0f, 1},
      {1.0f, 1, 1.0f, 0.0f, 0},   {0.8f, -1, 0.61f, 0.0f, 1}, {1.0f, -1, 0.95f, 0.0f, 2}, {0.9f, 200000, 0.7f, 0.02f, 2},
      {1.0f, 5000, 1.0f, 0.3f, 1}, {0.6f, 20, 0.95f, 0.0f, 0}, {1.0f, 64, 0.9f, 0.0f, 2},  {1.0f, 64, 0.5f, 0.0f, 3},
      {2.0f, 256, 0.99f, 0.01f, 3}};
  const int64_t R = int64_t(cases.size()) * kPositions;
  Buffer x(DType::kF32, {R, V});
  std::vector<RowSampling> params;
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  std::uniform_int_distribution<int> level(0, 12);
  for (size_t c = 0; c < cases.size(); ++c)
    for (int64_t j = 0; j < kPositions; ++j) {
      float* row = static_cast<float*>(x.tensor().row_ptr(int64_t(params.size())));
      for (int64_t i = 0; i < V; ++i) {
        if (cases[c].kind == 1) row[i] = 0.5f * float(level(rng)) - 3.f;  // 13 levels: long runs of ties
        else if (cases[c].kind == 2) row[i] = i % 997 == 0 ? u(rng) + 12.f : u(rng) - 30.f;
        else if (cases[c].kind == 3) row[i] = i % 997 == 0 ? 0.5f * float(level(rng)) + 9.f : u(rng);
        else row[i] = u(rng);
      }
      params.push_back({cases[c].t, cases[c].k, cases[c].p, cases[c].min_p, 1000 + c, 7 * j + 3});
      if (j == 5) params.back().forced = int32_t((c * 7919) % V);  // a teacher-forced row: its token, no draw
    }
  std::vector<int32_t> want(static_cast<size_t>(R));
  ops::sample_rows(x.tensor(), params.data(), want.data());
  auto dx = upload(x.tensor());
  auto dp = upload_vec(params);
  DeviceBuffer dout(size_t(R) * sizeof(int32_t));
  // Both ways of finding a top-k (the shortlist where it can answer, radix select only).
  DeviceBuffer answered(sizeof(int));
  for (const bool shortlist : {true, false}) {
    ops::cuda::set_sampling_shortlist(shortlist);
    SPARROW_CUDA_CHECK(cudaMemset(dout.data(), 0xff, dout.nbytes()));
    SPARROW_CUDA_CHECK(cudaMemset(answered.data(), 0, sizeof(int)));
    ops::cuda::sample_rows(dx.tensor(), static_cast<const RowSampling*>(dp.data()), static_cast<int32_t*>(dout.data()),
                           static_cast<int*>(answered.data()));
    ops::cuda::set_sampling_shortlist(true);
    const auto got = download_vec<int32_t>(dout.data(), size_t(R));
    for (int64_t r = 0; r < R; ++r)
      EXPECT_EQ(got[size_t(r)], want[size_t(r)]) << "case " << r / kPositions << " position " << r % kPositions
                                                 << (shortlist ? " (shortlist)" : " (radix only)");
    const int n = download_vec<int>(answered.data(), 1)[0];
    std::printf("[sample_rows paths] %s: the shortlist answered %d of %lld rows\n", shortlist ? "shortlist" : "radix only",
                n, (long long)R);
    // The top-k rows without a flat top (cases 1, 5, 8, 13, 14, 15; not their forced rows) at least.
    if (shortlist) EXPECT_GE(n, 6 * int(kPositions - 1)); else EXPECT_EQ(n, 0);
  }
  // The draws vary with the position (not one fixed token per case).
  std::set<int32_t> distinct(want.begin(), want.begin() + kPositions);
  EXPECT_GT(distinct.size(), 3u);
}

// The device's logit edits (penalties and masks before sample_rows) give the CPU op's bits
// on vocabulary-sized rows: positive, negative and zero logits, repetition factors above
// and below 1, subtractions of both signs, masks, thousands of edits per row, rows with
// none; the saved originals are the logits as given and restore_logits puts them back.
// Then sample_edited_rows (edits, greedy and seeded rows, logprobs under the logits as
// given) chooses the CPU's tokens; logprobs within 1e-5 nat (RowLogprobsMatchCpu).
TEST_F(Gpu, LogitEditsMatchCpu) {
  std::mt19937 rng(21);
  const int64_t V = 151936, R = 24;
  Buffer x(DType::kF32, {R, V});
  std::uniform_real_distribution<float> u(-6.f, 6.f);
  for (int64_t r = 0; r < R; ++r) {
    float* row = static_cast<float*>(x.tensor().row_ptr(r));
    for (int64_t i = 0; i < V; ++i) row[i] = i % 50 == 7 ? 0.0f : u(rng);
  }
  const float reps[] = {1.0f, 1.1f, 0.85f, 1.7f}, subs[] = {0.0f, 0.5f, -0.3f, 2.25f, 1e-3f};
  std::vector<LogitEdit> edits;
  for (int32_t r = 0; r < int32_t(R); ++r) {
    if (r % 5 == 4) continue;  // a row without edits
    const int64_t n = r % 3 == 0 ? 6000 : 40 + r;
    std::set<int32_t> used;
    int32_t top = 0;  // masked: the row's choice must move
    ops::argmax_rows(Tensor(x.tensor().row_ptr(r), DType::kF32, {1, V}), &top);
    edits.push_back({r, top, 1.0f, 0.0f, 1});
    used.insert(top);
    for (int64_t j = 0; j < n; ++j) {
      int32_t t = int32_t(rng() % V);
      if (j < 3) t = int32_t(j * 50 + 7);  // zero logits
      if (!used.insert(t).second) continue;
      edits.push_back({r, t, reps[rng() % 4], subs[rng() % 5], int32_t(rng() % 23 == 0)});
    }
  }
  const int64_t n = int64_t(edits.size());
  Buffer want = Buffer(DType::kF32, {R, V});
  std::memcpy(want.data(), x.data(), size_t(R * V) * 4);
  std::vector<float> want_saved(static_cast<size_t>(n));
  ops::apply_logit_edits(want.tensor(), edits.data(), n, want_saved.data());
  auto dx = upload(x.tensor());
  auto de = upload_vec(edits);
  DeviceBuffer dsaved(size_t(n) * 4);
  const auto* dedits = static_cast<const LogitEdit*>(de.data());
  ops::apply_logit_edits(dx.tensor(), dedits, n, static_cast<float*>(dsaved.data()));
  const Buffer got = download(dx.tensor());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), size_t(R * V) * 4), 0) << "edited logits differ from the CPU's bits";
  EXPECT_EQ(download_vec<float>(dsaved.data(), size_t(n)), want_saved);
  ops::restore_logits(dx.tensor(), dedits, n, static_cast<const float*>(dsaved.data()));
  const Buffer back = download(dx.tensor());
  EXPECT_EQ(std::memcmp(back.data(), x.data(), size_t(R * V) * 4), 0) << "restore_logits left edits behind";

  // The executor's sequence on both devices.
  std::vector<RowSampling> sp(static_cast<size_t>(R));
  std::vector<RowLogprobs> lp(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    if (r % 2) sp[size_t(r)] = {r % 4 == 1 ? 1.0f : 0.7f, r % 3 ? 50 : -1, 0.9f, 0.0f, uint64_t(r), 40 + r};
    lp[size_t(r)].top_n = 4;
    lp[size_t(r)].num_ids = 1;
    lp[size_t(r)].ids[0] = 7;
  }
  std::vector<int32_t> want_tok(static_cast<size_t>(R));
  std::vector<RowLogprobsOut> want_lp(static_cast<size_t>(R));
  std::vector<float> scratch(static_cast<size_t>(n));
  ops::sample_edited_rows(x.tensor(), edits.data(), n, scratch.data(), sp.data(), want_tok.data(), lp.data(), want_lp.data());
  auto dsp = upload_vec(sp);
  auto dlp = upload_vec(lp);
  DeviceBuffer dtok(size_t(R) * 4), dout(size_t(R) * sizeof(RowLogprobsOut));
  ops::sample_edited_rows(dx.tensor(), dedits, n, static_cast<float*>(dsaved.data()),
                          static_cast<const RowSampling*>(dsp.data()), static_cast<int32_t*>(dtok.data()),
                          static_cast<const RowLogprobs*>(dlp.data()), static_cast<RowLogprobsOut*>(dout.data()));
  const auto got_tok = download_vec<int32_t>(dtok.data(), size_t(R));
  const auto got_lp = download_vec<RowLogprobsOut>(dout.data(), size_t(R));
  EXPECT_EQ(got_tok, want_tok);
  const Buffer after = download(dx.tensor());
  EXPECT_EQ(std::memcmp(after.data(), x.data(), size_t(R * V) * 4), 0) << "sample_edited_rows left edits behind";
  int64_t moved = 0;  // rows whose edits changed the choice (else the edits prove nothing)
  for (int64_t r = 0; r < R; ++r) {
    EXPECT_NEAR(got_lp[size_t(r)].logprob, want_lp[size_t(r)].logprob, 1e-5) << "row " << r;
    EXPECT_NEAR(got_lp[size_t(r)].id_logprobs[0], want_lp[size_t(r)].id_logprobs[0], 1e-5) << "row " << r;
    int32_t raw = 0;
    std::vector<RowSampling> one = {sp[size_t(r)]};
    ops::sample_rows(Tensor(x.tensor().row_ptr(r), DType::kF32, {1, V}), one.data(), &raw);
    moved += raw != want_tok[size_t(r)];
  }
  EXPECT_GE(moved, (R - R / 5) / 2);  // at least the greedy rows with edits

  // What the edits add to a device-sampled step (printed).
  cudaEvent_t e0, e1;
  SPARROW_CUDA_CHECK(cudaEventCreate(&e0));
  SPARROW_CUDA_CHECK(cudaEventCreate(&e1));
  const int64_t m = n;
  SPARROW_CUDA_CHECK(cudaEventRecord(e0, cuda::current_stream()));
  for (int i = 0; i < 20; ++i) {
    ops::apply_logit_edits(dx.tensor(), dedits, m, static_cast<float*>(dsaved.data()));
    ops::restore_logits(dx.tensor(), dedits, m, static_cast<const float*>(dsaved.data()));
  }
  SPARROW_CUDA_CHECK(cudaEventRecord(e1, cuda::current_stream()));
  SPARROW_CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  SPARROW_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  std::printf("[logit edits] %lld edits: apply + restore %.1f us; %lld of %lld rows chose another token\n",
              (long long)m, 1000.0 * ms / 20, (long long)moved, (long long)R);
  SPARROW_CUDA_CHECK(cudaEventDestroy(e0));
  SPARROW_CUDA_CHECK(cudaEventDestroy(e1));
}

// Logits rows for the row_logprobs tests, kind = row % kLogprobKinds: uniform, 13-level
// ties, tiny distinct logits that share logprobs, peaked, mostly -inf, all equal, large
// magnitudes, maxima repeated far apart next to one-ulp neighbours, and peaks that all sit
// in one thread's elements (every 8192nd, a multiple of the cluster's stride: the
// shortlist's warp maxima miss most of them);
// top_n from `tops` by row / kLogprobKinds; requested ids 0 / 3 / the cap; chosen tokens
// the argmax or any.
constexpr int kLogprobKinds = 9;
struct LogprobRows {
  Buffer x;
  std::vector<RowLogprobs> params;
  std::vector<int32_t> chosen;
};
LogprobRows make_logprob_rows(int64_t V, const std::vector<int>& tops, std::mt19937& rng) {
  const int64_t R = kLogprobKinds * int64_t(tops.size());
  LogprobRows d{Buffer(DType::kF32, {R, V}), std::vector<RowLogprobs>(size_t(R)), std::vector<int32_t>(size_t(R))};
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  std::uniform_int_distribution<int> level(0, 12);
  std::uniform_int_distribution<int32_t> any(0, int32_t(V - 1));
  for (int64_t r = 0; r < R; ++r) {
    const int kind = int(r % kLogprobKinds);
    float* row = static_cast<float*>(d.x.tensor().row_ptr(r));
    for (int64_t i = 0; i < V; ++i) {
      switch (kind) {
        case 0: row[i] = u(rng); break;
        case 1: row[i] = 0.5f * float(level(rng)) - 3.f; break;
        case 2: row[i] = 1e-3f * u(rng); break;
        case 3: row[i] = i % 997 == 0 ? u(rng) + 12.f : u(rng) - 30.f; break;
        case 4: row[i] = i % 101 == 3 ? u(rng) : -INFINITY; break;
        case 5: row[i] = 0.25f; break;
        case 6: row[i] = 3e4f * u(rng); break;
        case 8: row[i] = i % 8192 == 77 ? u(rng) + 9.f : u(rng); break;
        default: row[i] = u(rng) - 2.f;
      }
    }
    if (kind == 7) {  // the maximum at both ends, one-ulp neighbours in between
      row[0] = row[V - 1] = 6.f;
      for (int64_t i = 1; i + 1 < V && i < 12; i += 2) row[i * V / 13] = std::nextafter(6.f, 0.f), row[i * V / 13 + 1] = 5.9999f;
    }
    RowLogprobs& p = d.params[size_t(r)];
    p.top_n = tops[size_t(r / kLogprobKinds) % tops.size()];
    p.num_ids = int32_t(r % 3 == 0 ? 0 : r % 3 == 1 ? 3 : kRowLogprobsMaxIds);
    for (int j = 0; j < p.num_ids; ++j) p.ids[j] = j == 0 ? 0 : j == 1 ? int32_t(V - 1) : j == 2 ? 0 : any(rng);
    int32_t top = 0;
    ops::argmax_rows(Tensor(row, DType::kF32, {1, V}), &top);
    d.chosen[size_t(r)] = r % 2 ? top : any(rng);
  }
  return d;
}

// The device's output logprobs (ops::row_logprobs: the cluster's normalizer, top-N by the
// shortlist or the radix select) against the host path (ops::log_softmax, then
// kernels/logprobs.h top_n) on vocabulary-sized rows of every make_logprob_rows kind;
// top_n -1 (untouched) / 0 / 1 / 5 / 20 / the cap, and beyond V.
// Values within 1e-5 nat (measured: identical bits in most rows); ids and order exact,
// except that two tokens may trade places where the CPU's logprobs of the two are within
// that tolerance (lse one ulp apart can merge or split such a pair).
TEST_F(Gpu, RowLogprobsMatchCpu) {
  std::mt19937 rng(11);
  constexpr double kTol = 1e-5;
  const std::vector<int> tops = {-1, 0, 1, 5, 20, kRowLogprobsMaxTop};
  int64_t values = 0, same_bits = 0, traded = 0;
  for (const int64_t V : {int64_t(151936), int64_t(37)}) {
    const int64_t R = kLogprobKinds * int64_t(tops.size());
    const LogprobRows rows = make_logprob_rows(V, tops, rng);
    const Buffer& x = rows.x;
    const std::vector<RowLogprobs>& params = rows.params;
    const std::vector<int32_t>& chosen = rows.chosen;
    auto dx = upload(x.tensor());
    auto dc = upload_vec(chosen);
    auto dp = upload_vec(params);
    DeviceBuffer dout(size_t(R) * sizeof(RowLogprobsOut));
    SPARROW_CUDA_CHECK(cudaMemset(dout.data(), 0xff, dout.nbytes()));
    ops::row_logprobs(dx.tensor(), static_cast<const int32_t*>(dc.data()), static_cast<const RowLogprobs*>(dp.data()),
                      static_cast<RowLogprobsOut*>(dout.data()));
    const auto got = download_vec<RowLogprobsOut>(dout.data(), size_t(R));
    RowLogprobsOut poison;
    std::memset(static_cast<void*>(&poison), 0xff, sizeof(poison));
    std::vector<float> lp(static_cast<size_t>(V));
    const auto close = [&](float a, float b) { return a == b || std::fabs(double(a) - double(b)) <= kTol; };
    for (int64_t r = 0; r < R; ++r) {
      const int kind = int(r % kLogprobKinds);
      const RowLogprobs& p = params[size_t(r)];
      const RowLogprobsOut& o = got[size_t(r)];
      const std::string at = "V " + std::to_string(V) + " row " + std::to_string(r) + " kind " + std::to_string(kind) +
                             " top_n " + std::to_string(p.top_n);
      if (p.top_n < 0) {
        EXPECT_EQ(std::memcmp(&o, &poison, sizeof(o)), 0) << at << ": a row that wants nothing was written";
        continue;
      }
      ops::log_softmax(Tensor(x.tensor().row_ptr(r), DType::kF32, {1, V}), Tensor(lp.data(), DType::kF32, {1, V}));
      const auto value = [&](float g, float want, const std::string& what) {
        EXPECT_TRUE(close(g, want)) << at << " " << what << ": " << g << " vs " << want;
        ++values;
        same_bits += std::memcmp(&g, &want, 4) == 0;
      };
      value(o.logprob, lp[size_t(chosen[size_t(r)])], "chosen");
      for (int j = 0; j < p.num_ids; ++j) value(o.id_logprobs[j], lp[size_t(p.ids[j])], "id " + std::to_string(j));
      const std::vector<TokenLogprob> want = top_n(lp.data(), V, p.top_n);
      std::set<int32_t> seen;
      for (size_t j = 0; j < want.size(); ++j) {
        const int32_t id = o.top_ids[j];
        ASSERT_TRUE(id >= 0 && id < V) << at << " rank " << j << ": id " << id;
        EXPECT_TRUE(seen.insert(id).second) << at << " rank " << j << ": id " << id << " twice";
        value(o.top_logprobs[j], want[j].logprob, "rank " + std::to_string(j));
        EXPECT_TRUE(close(o.top_logprobs[j], lp[size_t(id)])) << at << " rank " << j << ": value of another id";
        if (id == want[j].token_id) continue;
        ++traded;
        // Exact ties (levels, all equal, -inf) are ties on both sides: ids must match there.
        EXPECT_TRUE(kind != 1 && kind != 4 && kind != 5) << at << " rank " << j << ": id " << id << " vs " << want[j].token_id;
        EXPECT_TRUE(close(lp[size_t(id)], want[j].logprob))
            << at << " rank " << j << ": id " << id << " (lp " << lp[size_t(id)] << ") for " << want[j].token_id << " ("
            << want[j].logprob << ")";
      }
    }
  }
  std::printf("[row_logprobs] %lld values, %lld with the CPU's bits; %lld top-N places traded within tolerance\n",
              (long long)values, (long long)same_bits, (long long)traded);
  RecordProperty("same_bits", std::to_string(same_bits) + " of " + std::to_string(values));
}

// The two top-N paths of row_logprobs (the shortlist where it can answer, the radix
// select) write the same bytes on every make_logprob_rows kind, and the shortlist answers
// the rows it is for (uniform and peaked rows: no ties near the N-th token).
TEST_F(Gpu, RowLogprobsShortlistIsTheRadixPath) {
  std::mt19937 rng(5);
  const std::vector<int> tops = {1, 5, 20, kRowLogprobsMaxTop, 0};
  for (const int64_t V : {int64_t(151936), int64_t(4099)}) {
    const int64_t R = kLogprobKinds * int64_t(tops.size());
    const LogprobRows rows = make_logprob_rows(V, tops, rng);
    auto dx = upload(rows.x.tensor());
    auto dc = upload_vec(rows.chosen);
    auto dp = upload_vec(rows.params);
    DeviceBuffer answered(sizeof(int));
    std::vector<std::vector<RowLogprobsOut>> got;
    for (const bool shortlist : {true, false}) {
      ops::cuda::set_sampling_shortlist(shortlist);
      DeviceBuffer dout(size_t(R) * sizeof(RowLogprobsOut));
      SPARROW_CUDA_CHECK(cudaMemset(dout.data(), 0xff, dout.nbytes()));
      SPARROW_CUDA_CHECK(cudaMemset(answered.data(), 0, sizeof(int)));
      ops::cuda::row_logprobs(dx.tensor(), static_cast<const int32_t*>(dc.data()),
                              static_cast<const RowLogprobs*>(dp.data()), static_cast<RowLogprobsOut*>(dout.data()),
                              static_cast<int*>(answered.data()));
      got.push_back(download_vec<RowLogprobsOut>(dout.data(), size_t(R)));
      const int n = download_vec<int>(answered.data(), 1)[0];
      std::printf("[row_logprobs paths] V %lld, %s: the shortlist answered %d of %lld rows\n", (long long)V,
                  shortlist ? "shortlist" : "radix only", n, (long long)R);
      if (!shortlist) EXPECT_EQ(n, 0);
      // kinds 0 (uniform) and 3 (peaked) with top_n >= 1: 4 of tops each
      if (shortlist && V > 100000) EXPECT_GE(n, 8);
    }
    ops::cuda::set_sampling_shortlist(true);
    for (int64_t r = 0; r < R; ++r)
      EXPECT_EQ(std::memcmp(&got[0][size_t(r)], &got[1][size_t(r)], sizeof(RowLogprobsOut)), 0)
          << "V " << V << " row " << r << " kind " << r % kLogprobKinds << " top_n " << rows.params[size_t(r)].top_n;
  }
}

// What a device-sampled decode step with logprobs adds (no assertions; printed): at Qwen3's
// vocabulary, sample_rows (T 1.0; and Qwen3's T 0.6, top-k 20, top-p 0.95, also by radix
// select alone) then row_logprobs (top 5, 3 ids; also by radix select alone) on the
// device, against the copy of the [rows, V] f32 logits into pinned host memory that the
// host path starts with (before its per-row log-softmax and sampling).
TEST_F(Gpu, RowLogprobsTiming) {
  std::mt19937 rng(2);
  const int64_t V = 151936, kMaxRows = 128;
  Buffer x(DType::kF32, {kMaxRows, V});
  fill_uniform(x.tensor(), rng, -8, 8);
  auto dx = upload(x.tensor());
  std::vector<RowSampling> sp(kMaxRows);
  std::vector<RowLogprobs> lp(kMaxRows);
  for (int64_t r = 0; r < kMaxRows; ++r) {
    sp[size_t(r)] = {1.0f, -1, 1.0f, 0.0f, uint64_t(r), 100};
    lp[size_t(r)].top_n = 5;
    lp[size_t(r)].num_ids = 3;
    lp[size_t(r)].ids[0] = 1, lp[size_t(r)].ids[1] = 2, lp[size_t(r)].ids[2] = 3;
  }
  auto dsp = upload_vec(sp);
  std::vector<RowSampling> qwen = sp;  // Qwen3's recommended sampling: T 0.6, top-k 20, top-p 0.95
  for (RowSampling& q : qwen) q.temperature = 0.6f, q.top_k = 20, q.top_p = 0.95f;
  auto dqwen = upload_vec(qwen);
  auto dlp = upload_vec(lp);
  DeviceBuffer dchosen(size_t(kMaxRows) * 4), dout(size_t(kMaxRows) * sizeof(RowLogprobsOut));
  Buffer pinned = cuda::pinned_buffer(DType::kF32, {kMaxRows, V});
  cudaEvent_t e0, e1;
  SPARROW_CUDA_CHECK(cudaEventCreate(&e0));
  SPARROW_CUDA_CHECK(cudaEventCreate(&e1));
  const auto time_us = [&](const std::function<void()>& f) {
    f();  // warm-up
    constexpr int kIters = 20;
    SPARROW_CUDA_CHECK(cudaEventRecord(e0, cuda::current_stream()));
    for (int i = 0; i < kIters; ++i) f();
    SPARROW_CUDA_CHECK(cudaEventRecord(e1, cuda::current_stream()));
    SPARROW_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    SPARROW_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return 1000.0 * ms / kIters;
  };
  for (const int64_t rows : {int64_t(1), int64_t(8), int64_t(32), kMaxRows}) {
    const Tensor t = dx.tensor().slice_rows(0, rows);
    auto* c = static_cast<int32_t*>(dchosen.data());
    const double sample = time_us([&] { ops::sample_rows(t, static_cast<const RowSampling*>(dsp.data()), c); });
    const auto top_k_us = [&](bool shortlist) {
      ops::cuda::set_sampling_shortlist(shortlist);
      const double us = time_us([&] { ops::sample_rows(t, static_cast<const RowSampling*>(dqwen.data()), c); });
      ops::cuda::set_sampling_shortlist(true);
      return us;
    };
    const double top_k = top_k_us(true), top_k_radix = top_k_us(false);
    const auto logprobs_us = [&](bool shortlist) {
      ops::cuda::set_sampling_shortlist(shortlist);
      const double us = time_us([&] {
        ops::row_logprobs(t, c, static_cast<const RowLogprobs*>(dlp.data()), static_cast<RowLogprobsOut*>(dout.data()));
      });
      ops::cuda::set_sampling_shortlist(true);
      return us;
    };
    const double logprobs = logprobs_us(true), radix = logprobs_us(false);
    const double copy = time_us([&] {
      SPARROW_CUDA_CHECK(cudaMemcpyAsync(pinned.data(), t.data(), size_t(rows * V) * 4, cudaMemcpyDeviceToHost,
                                         cuda::current_stream()));
    });
    std::printf("[row_logprobs timing] rows %3lld: sample_rows %7.1f us (T 0.6, top-k 20, top-p 0.95: %7.1f us, radix "
                "path only %7.1f us), row_logprobs %7.1f us (radix path only %7.1f us); logits to pinned host %7.1f us\n",
                (long long)rows, sample, top_k, top_k_radix, logprobs, radix, copy);
    RecordProperty("rows_" + std::to_string(rows) + "_us",
                   std::to_string(sample) + " / " + std::to_string(top_k) + " / " + std::to_string(top_k_radix) + " / " +
                       std::to_string(logprobs) + " / " + std::to_string(radix) + " / " + std::to_string(copy));
  }
  SPARROW_CUDA_CHECK(cudaEventDestroy(e0));
  SPARROW_CUDA_CHECK(cudaEventDestroy(e1));
}

TEST_F(Gpu, DeviceArenaCarvesOneAllocation) {
  cuda::MemoryPlan plan;
  plan.weights_bytes = 1 << 20;
  plan.kv_bytes = 3 << 20;
  plan.workspace_bytes = 1 << 20;
  cuda::DeviceArena arena(plan);
  const Tensor a = arena.weights().alloc(DType::kBF16, {100, 3});
  const Tensor b = arena.kv().alloc(DType::kF32, {10});
  EXPECT_EQ(a.device(), Device::kCUDA);
  EXPECT_EQ(static_cast<char*>(b.data()) - static_cast<char*>(arena.weights().base()), int64_t(1 << 20));
  EXPECT_THROW(arena.workspace().alloc_bytes(size_t(2) << 20), Error);
  EXPECT_GT(cuda::plan_memory(1 << 20, 1 << 20, 0.5).kv_bytes, size_t(0));
  const auto info = cuda::device_info();
  std::printf("device: %s, %d SMs, %.1f GiB, SM clock %d MHz, mem clock %d MHz\n", info.name.c_str(), info.sm_count,
              double(info.total_mem) / (1 << 30), info.sm_clock_mhz, info.mem_clock_mhz);
}

}  // namespace
}  // namespace sparrow
