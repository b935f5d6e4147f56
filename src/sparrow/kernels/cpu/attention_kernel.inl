// Paged-attention kernel body shared by attention_avx512.cpp and attention_avx2.cpp
// (included after simd16.h). Per query (one head, absolute position p):
//   for each KV tile [t0, t0 + 64) with t0 <= p, over positions t0 .. min(t0 + 63, p):
//     s_j   = hsum16(16-lane partial dot products of q and k_j, see score_group) * scale
//     m'    = max(m, max_j s_j);  alpha = exp(m - m')
//     p_j   = exp(s_j - m')  (vector polynomial exp)
//     l     = fma(l, alpha, hsum16(sum over 16-position groups of p, in group order))
//     acc   = acc * alpha, then acc += p_j * v_j for j in increasing order (lane-wise FMA)
//   out = acc / l
// q / k / v may be f32 / f32 / f32, bf16 / bf16 / bf16 or f32 / bf16 / bf16 (scores then use
// FMA in the vdpbf16ps lane order on pair-packed q; values are widened exactly).
// Every quantity depends only on p and the tile grid, never on the other queries of the
// step, so decode and extend (and any batch mix) give the same bits.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "sparrow/kernels/cpu/attention_kernels.h"

namespace sparrow::cpu {
namespace {

constexpr int kTile = kAttnKvTile;
static_assert(kTile % 16 == 0);

inline V16 load16(const float* p) { return vload(p); }
inline V16 load16(const uint16_t* p) { return vload_bf16(p); }

inline void store16(float* dst, V16 v) { vstore(dst, v); }
inline void store16(uint16_t* dst, V16 v) {
  alignas(64) float tmp[16];
  vstore(tmp, v);
  for (int i = 0; i < 16; ++i) dst[i] = f32_to_bf16(tmp[i]);
}

struct Scratch {
  std::vector<float> q, qp, acc, m, l;
};

inline void prefetch_row(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T1);
}

// acc[j] = 16-lane partial dot products of q with the 16 key rows kk[j] over D:
// f32: lane i sums q[16c+i] * k[16c+i] over chunks c in order (FMA);
// bf16: lane i sums pairs (32c+2i+1, then 32c+2i) over chunks c in order (vdpbf16ps;
// a final half chunk when D % 32 == 16 is zero-padded).
inline void score_group(const float* qv, const float*, const float* const* kk, int64_t D, V16* acc) {
  for (int j = 0; j < 16; ++j) acc[j] = vzero();
  for (int64_t c = 0; c < D / 16; ++c) {
    const V16 qc = vload(qv + c * 16);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) acc[j] = vfma(qc, load16(kk[j] + c * 16), acc[j]);
  }
}
inline void score_group(const float*, const uint16_t* q, const uint16_t* const* kk, int64_t D,
                        V16* acc) {
  for (int j = 0; j < 16; ++j) acc[j] = vzero();
  int64_t d = 0;
  for (; d + 32 <= D; d += 32) {
    const XB qb = load_xb(q + d);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) acc[j] = vdot_bf16(acc[j], qb, load_wb(kk[j] + d));
  }
  if (d < D) {
    const int rem = int(D - d);
    const XB qb = load_xb_tail(q + d, rem);
    for (int j = 0; j < 16; ++j) acc[j] = vdot_bf16(acc[j], qb, load_wb_tail(kk[j] + d, rem));
  }
}

// f32 q (qp: packed in pair layout, zero-padded to a multiple of 32), bf16 k: lane i
// FMAs q[32c+2i+1]*k[32c+2i+1], then q[32c+2i]*k[32c+2i], over chunks c in order (a final
// half chunk when D % 32 == 16 is zero-padded).
inline void score_group(const float*, const float* qp, const uint16_t* const* kk, int64_t D,
                        V16* acc) {
  for (int j = 0; j < 16; ++j) acc[j] = vzero();
  int64_t d = 0;
  for (; d + 32 <= D; d += 32) {
    const XF qb = load_xf(qp + d);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) acc[j] = vdot_f32_bf16(acc[j], qb, load_wb(kk[j] + d));
  }
  if (d < D) {
    const int rem = int(D - d);
    const XF qb = load_xf(qp + d);
    for (int j = 0; j < 16; ++j) acc[j] = vdot_f32_bf16(acc[j], qb, load_wb_tail(kk[j] + d, rem));
  }
}

// acc[c] (c < CB chunks of 16) = acc[c] * alpha + sum_j p_j * v_j[c], j in increasing order.
template <int CB, class E>
inline void pv_pass(float* acc, const E* const* vp, const float* p, int nv, V16 alpha) {
  V16 av[CB];
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c) av[c] = vmul(vload(acc + c * 16), alpha);
  for (int j = 0; j < nv; ++j) {
    const V16 pj = vset1(p[j]);
    const E* v = vp[j];
#pragma GCC unroll 16
    for (int c = 0; c < CB; ++c) av[c] = vfma(pj, load16(v + c * 16), av[c]);
  }
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c) vstore(acc + c * 16, av[c]);
}

// E: dtype of q and out; KV: dtype of the caches (E, or uint16_t with E = float).
template <class E, class KV>
void run_item(const AttnArgs& a, const AttnItem& it, Scratch& s) {
  constexpr bool kMixed = !std::is_same_v<E, KV>;
  const ops::AttentionBatch& bt = *a.batch;
  const int64_t D = a.D, Hq = a.Hq, Hkv = a.Hkv, G = Hq / Hkv;
  const int64_t nrows = it.r1 - it.r0, nh = it.g1 - it.g0, M = nh * nrows * G, nc = D / 16;
  const int64_t seq = bt.seq_lens[it.b], ext = bt.extend_lens[it.b], start = seq - ext;
  const int32_t* r2t = bt.req_to_token + int64_t(bt.req_slots[it.b]) * bt.max_context;
  const E* q = static_cast<const E*>(a.q);
  const KV* kc = static_cast<const KV*>(a.k);
  const KV* vc = static_cast<const KV*>(a.v);
  E* out = static_cast<E*>(a.out);
  const int64_t row0 = bt.q_offsets[it.b] + it.r0;
  // Query vector index for (kv head g0 + gi, row ri, group member hi).
  auto qidx = [&](int64_t gi, int64_t ri, int64_t hi) { return (gi * nrows + ri) * G + hi; };
  auto qraw = [&](int64_t gi, int64_t ri, int64_t hi) {
    return q + ((row0 + ri) * Hq + (it.g0 + gi) * G + hi) * D;
  };

  const int64_t Dp = (D + 31) / 32 * 32;
  s.q.resize(size_t(M * D));
  if constexpr (kMixed) s.qp.resize(size_t(M * Dp));
  s.acc.assign(size_t(M * D), 0.f);
  s.m.assign(size_t(M), -std::numeric_limits<float>::infinity());
  s.l.assign(size_t(M), 0.f);
  for (int64_t gi = 0; gi < nh; ++gi)
    for (int64_t ri = 0; ri < nrows; ++ri)
      for (int64_t hi = 0; hi < G; ++hi) {
        const E* src = q + ((row0 + ri) * Hq + (it.g0 + gi) * G + hi) * D;
        float* dst = s.q.data() + qidx(gi, ri, hi) * D;
        for (int64_t c = 0; c < nc; ++c) vstore(dst + c * 16, load16(src + c * 16));
        if constexpr (kMixed)
          for (int64_t d = 0; d < D; d += 32)
            pack_pairs(dst + d, int(std::min<int64_t>(32, D - d)), s.qp.data() + qidx(gi, ri, hi) * Dp + d);
      }

  const int64_t pmax = start + it.r1 - 1;
  const int64_t head_bytes = nh * D * int64_t(sizeof(KV));
  const KV* kbase[kTile];
  const KV* vbase[kTile];
  const KV* kp[kTile];
  const KV* vp[kTile];
  alignas(64) float sc[kTile];
  const V16 vscale = vset1(a.scale);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t t0 = 0; t0 <= pmax; t0 += kTile) {
    const int nt = int(std::min<int64_t>(kTile, pmax + 1 - t0));
    for (int j = 0; j < nt; ++j) {
      const int64_t off = (int64_t(r2t[t0 + j]) * Hkv + it.g0) * D;
      kbase[j] = kc + off;
      vbase[j] = vc + off;
    }
    // Start pulling in the next tile's rows (slots are scattered, so the hardware
    // prefetcher cannot follow them).
    const int64_t nn = std::min<int64_t>(kTile, pmax + 1 - (t0 + kTile));
    for (int64_t j = 0; j < nn; ++j) {
      const int64_t off = (int64_t(r2t[t0 + kTile + j]) * Hkv + it.g0) * D;
      prefetch_row(kc + off, head_bytes);
      prefetch_row(vc + off, head_bytes);
    }
    for (int64_t gi = 0; gi < nh; ++gi) {
      for (int j = 0; j < nt; ++j) {
        kp[j] = kbase[j] + gi * D;
        vp[j] = vbase[j] + gi * D;
      }
      for (int64_t ri = 0; ri < nrows; ++ri) {
        const int64_t p = start + it.r0 + ri;
        if (p < t0) continue;
        const int nv = int(std::min<int64_t>(nt, p + 1 - t0));
        const int ng = (nv + 15) / 16;
        for (int64_t hi = 0; hi < G; ++hi) {
          const int64_t qi = qidx(gi, ri, hi);
          const float* qv = s.q.data() + qi * D;
          float mt = ninf;
          for (int gr = 0; gr < ng; ++gr) {
            V16 acc16[16];
            const KV* kk[16];
            for (int j = 0; j < 16; ++j) kk[j] = kp[std::min(gr * 16 + j, nv - 1)];  // padding reuses a valid row
            if constexpr (kMixed)
              score_group(qv, s.qp.data() + qi * Dp, kk, D, acc16);
            else
              score_group(qv, qraw(gi, ri, hi), kk, D, acc16);
            const V16 sv = vkeep_first(vmul(vreduce16(acc16), vscale), nv - gr * 16, ninf);
            mt = std::max(mt, vhmax(sv));
            vstore(sc + gr * 16, sv);
          }
          const float m_old = s.m[size_t(qi)];
          const float m_new = std::max(m_old, mt);
          const float alpha = std::exp(m_old - m_new);
          V16 psum = vzero();
          const V16 vm = vset1(m_new);
          for (int gr = 0; gr < ng; ++gr) {
            const V16 pv = vkeep_first(vexp(vsub(vload(sc + gr * 16), vm)), nv - gr * 16, 0.f);
            vstore(sc + gr * 16, pv);
            psum = vadd(psum, pv);
          }
          s.l[size_t(qi)] = std::fma(s.l[size_t(qi)], alpha, vhsum(psum));
          s.m[size_t(qi)] = m_new;
          float* acc = s.acc.data() + qi * D;
          const V16 va = vset1(alpha);
          int64_t c = 0;
#if defined(SPARROW_SIMD16_AVX512)
          for (; c + 8 <= nc; c += 8) {  // 8 independent FMA chains per position
            const KV* vpc[kTile];
            for (int j = 0; j < nv; ++j) vpc[j] = vp[j] + c * 16;
            pv_pass<8>(acc + c * 16, vpc, sc, nv, va);
          }
#endif
          for (; c + 4 <= nc; c += 4) {
            const KV* vpc[kTile];
            for (int j = 0; j < nv; ++j) vpc[j] = vp[j] + c * 16;
            pv_pass<4>(acc + c * 16, vpc, sc, nv, va);
          }
          for (; c < nc; ++c) {
            const KV* vpc[kTile];
            for (int j = 0; j < nv; ++j) vpc[j] = vp[j] + c * 16;
            pv_pass<1>(acc + c * 16, vpc, sc, nv, va);
          }
        }
      }
    }
  }

  for (int64_t gi = 0; gi < nh; ++gi)
    for (int64_t ri = 0; ri < nrows; ++ri)
      for (int64_t hi = 0; hi < G; ++hi) {
        const int64_t qi = qidx(gi, ri, hi);
        const V16 vl = vset1(s.l[size_t(qi)]);
        const float* acc = s.acc.data() + qi * D;
        E* dst = out + ((row0 + ri) * Hq + (it.g0 + gi) * G + hi) * D;
        for (int64_t c = 0; c < nc; ++c) store16(dst + c * 16, vdiv(vload(acc + c * 16), vl));
      }
}

void attention_impl(const AttnArgs& a, const AttnItem* items, int64_t n) {
  thread_local Scratch scratch;
  for (int64_t i = 0; i < n; ++i) {
    if (a.dt == DType::kBF16)
      run_item<uint16_t, uint16_t>(a, items[i], scratch);
    else if (a.kvt == DType::kBF16)
      run_item<float, uint16_t>(a, items[i], scratch);
    else
      run_item<float, float>(a, items[i], scratch);
  }
}

}  // namespace
}  // namespace sparrow::cpu
