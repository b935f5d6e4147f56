// ops::attention_prep on the CPU (the reference the fused GPU kernel is held to) against the
// separate ops the CPU model runs: per-head / projection RMSNorm, RoPE, scatter into caches.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "sparrow/kernels/ops.h"

namespace sparrow {
namespace {

Buffer random_tensor(DType dt, Shape s, uint32_t seed, float lo, float hi) {
  Buffer b(dt, s);
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < s.numel(); ++i) store_from_f32(b.data(), dt, size_t(i), u(g));
  return b;
}

TEST(AttentionPrep, ReferenceEqualsSeparateOps) {
  for (ops::HeadNorm norm : {ops::HeadNorm::kNone, ops::HeadNorm::kPerHead, ops::HeadNorm::kProjection}) {
    const int64_t T = 3, Hq = 4, Hkv = 2, D = 8, slots = 6, nq = Hq * D, nk = Hkv * D;
    const bool per_head = norm == ops::HeadNorm::kPerHead;
    const Buffer qkv = random_tensor(DType::kF32, {T, nq + 2 * nk}, 1, -2, 2);
    const Buffer qw = random_tensor(DType::kF32, {per_head ? D : nq}, 2, 0.5f, 1.5f);
    const Buffer kw = random_tensor(DType::kF32, {per_head ? D : nk}, 3, 0.5f, 1.5f);
    const std::vector<int32_t> pos = {0, 5, 77}, loc = {4, 1, 2};
    std::vector<float> inv(static_cast<size_t>(D / 2));
    for (int64_t i = 0; i < D / 2; ++i) inv[size_t(i)] = float(std::pow(1e4, -double(2 * i) / double(D)));
    const Tensor* qn = norm == ops::HeadNorm::kNone ? nullptr : &qw.tensor();
    const Tensor* kn = norm == ops::HeadNorm::kNone ? nullptr : &kw.tensor();
    Buffer q(DType::kF32, {T, Hq, D}), kc(DType::kF32, {slots, Hkv, D}), vc(DType::kF32, {slots, Hkv, D});
    ops::attention_prep(qkv.tensor(), Hq, Hkv, norm, qn, kn, 1e-6f, pos.data(), inv.data(), loc.data(), q.tensor(), kc.tensor(),
                        vc.tensor());
    // The same with the separate ops.
    Buffer q2(DType::kF32, {T, Hq, D}), k2(DType::kF32, {T, Hkv, D}), v2(DType::kF32, {T, Hkv, D});
    for (int64_t t = 0; t < T; ++t) {
      const float* r = qkv.tensor().data_as<float>() + t * (nq + 2 * nk);
      std::copy(r, r + nq, q2.tensor().data_as<float>() + t * nq);
      std::copy(r + nq, r + nq + nk, k2.tensor().data_as<float>() + t * nk);
      std::copy(r + nq + nk, r + nq + 2 * nk, v2.tensor().data_as<float>() + t * nk);
    }
    if (per_head) {
      ops::head_rms_norm(q2.tensor(), qw.tensor(), 1e-6f);
      ops::head_rms_norm(k2.tensor(), kw.tensor(), 1e-6f);
    } else if (norm == ops::HeadNorm::kProjection) {
      ops::rms_norm(q2.tensor().view({T, nq}), qw.tensor(), 1e-6f, q2.tensor().view({T, nq}));
      ops::rms_norm(k2.tensor().view({T, nk}), kw.tensor(), 1e-6f, k2.tensor().view({T, nk}));
    }
    ops::rope(q2.tensor(), pos.data(), inv.data());
    ops::rope(k2.tensor(), pos.data(), inv.data());
    for (int64_t i = 0; i < T * nq; ++i)
      EXPECT_NEAR(q.tensor().data_as<float>()[i], q2.tensor().data_as<float>()[i], 1e-5) << int(norm) << " q " << i;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < nk; ++i) {
        EXPECT_NEAR(kc.tensor().data_as<float>()[loc[size_t(t)] * nk + i], k2.tensor().data_as<float>()[t * nk + i], 1e-5);
        EXPECT_EQ(vc.tensor().data_as<float>()[loc[size_t(t)] * nk + i], v2.tensor().data_as<float>()[t * nk + i]);
      }
  }
}

}  // namespace
}  // namespace sparrow
