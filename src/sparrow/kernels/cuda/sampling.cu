// Token choice per logits row on the GPU: argmax_rows, and sample_rows (ops.h gives the
// definition; tested against the CPU's kernels/cpu/sampling.cpp, itself held to the full
// sort of kernels/reference/sampling_ref); and row_logprobs, the chosen tokens' output
// logprobs (against ops::log_softmax + top_n). argmax_rows: one 1024-thread block per row;
// sample_rows and row_logprobs: a cluster of 8 512-thread blocks per row. Every pass
// re-reads the row (L2-resident).
//
// sample_rows never sorts. The candidate set of the definition is a prefix of the row in
// (logit descending, id ascending) order, so each cut (top-k, top-p) is a boundary (key K,
// id I) in that order: every token with a larger key is in, ties at K are in up to id I.
// A boundary is found by radix select over the 32-bit order-preserving key of the logit
// (four 8-bit passes, each a 256-bin histogram of the tokens still matching the prefix),
// weighted by count for top-k and by probability mass for top-p; a partial tie at K is
// split by one more select over the ids. Masses are fixed point (p_i * 2^46 for up to 2^17
// tokens, truncated; SampleParams::mass_scale), so sums are integer and exact in any
// order: the choice depends on the row alone. min-p is a threshold on p_i itself (p_max is
// exactly 1). Then Gumbel-max over the kept tokens, with the same keyed noise as the CPU
// (keyed_uniform, in double).
#include <cooperative_groups.h>

#include <atomic>
#include <climits>

#include "sparrow/core/hash.h"
#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {
namespace {

constexpr int kArgmaxThreads = 1024;  // argmax_rows: a block per row
// sample_rows / row_logprobs: blocks of 512 in clusters of 8 (a row on 4096 threads). With
// 64 registers a thread, two such blocks share an SM, so about twice as many rows' clusters
// are resident as with 1024-thread blocks (Nsight Compute at 128 rows: 15 clusters, SMs
// busy 56% of the time), at the cost of twice the elements per thread for a lone row.
constexpr int kThreads = 512;

// Larger logit -> larger key; NaN -> 0, below every number (never chosen over one).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  if (f != f) return 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Block-wide choice of the best (value, index): larger value, then lower index. `sv`, `si`:
// [32] shared. Every thread gets the result in (best, idx).
template <typename T>
__device__ __forceinline__ void block_best(T& best, int32_t& idx, T* sv, int32_t* si) {
  const auto better = [](T v, int32_t i, T bv, int32_t bi) { return v > bv || (v == bv && i < bi); };
  for (int o = 16; o > 0; o >>= 1) {
    const T ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (better(ov, oi, best, idx)) best = ov, idx = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // the arrays may still be read from a previous call
  if (lane == 0) sv[warp] = best, si[warp] = idx;
  __syncthreads();
  best = sv[0], idx = si[0];
  for (int w = 1; w < int(blockDim.x >> 5); ++w)
    if (better(sv[w], si[w], best, idx)) best = sv[w], idx = si[w];
}

// One thread's part of a row's argmax: its indices first, first + stride, ... scanned
// upwards keeping the first maximum ('>' only; among -inf the first). idx INT_MAX: none
// (NaN only); the block / cluster then keeps the larger value, the lower index on ties.
__device__ __forceinline__ void thread_argmax(const float* x, int64_t V, int64_t first, int64_t stride, float& best,
                                              int32_t& idx) {
  best = -INFINITY;
  idx = INT_MAX;
  for (int64_t i = first; i < V; i += stride)
    if (x[i] > best || (idx == INT_MAX && x[i] == best)) best = x[i], idx = int32_t(i);
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(ArgmaxParams p) {
  __shared__ float sv[32];
  __shared__ int32_t si[32];
  pdl_wait();
  pdl_launch_dependents();
  float best;
  int32_t idx;
  thread_argmax(p.x + int64_t(blockIdx.x) * p.V, p.V, threadIdx.x, blockDim.x, best, idx);
  block_best(best, idx, sv, si);
  if (threadIdx.x == 0) p.out[blockIdx.x] = idx == INT_MAX ? 0 : idx;  // a row of NaN only: 0
}

// sample_rows spreads each row over a cluster of kCluster blocks (block r takes the
// elements i with (i / kThreads) % kCluster == r): a lone row at batch 1 then runs on
// kCluster SMs. Per-block partials meet through distributed shared memory, combined in
// block-rank order; the integer histograms and sums are exact in any order anyway.
constexpr int kCluster = 8;
namespace cg = cooperative_groups;

struct SampleSmem {
  unsigned long long hist[256];
  unsigned long long pick[3];  // the chosen bin, the weight before it, the weight at it
  unsigned long long part_u;   // this block's integer partial (a sum or a key)
  float part_f;
  double part_d;
  int32_t part_i;
};

// The cluster's elements of this block: i = first(), first() + stride, ... < V.
struct Slice {
  int64_t first, stride;
};
__device__ __forceinline__ Slice my_slice() {
  return {int64_t(cg::this_cluster().block_rank()) * blockDim.x + threadIdx.x, int64_t(kCluster) * blockDim.x};
}

// Cluster-wide fold of each block's `part` (already block-reduced) in block-rank order.
template <typename T, typename Op>
__device__ T cluster_fold(T part, T SampleSmem::*field, SampleSmem& sm, Op op) {
  cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) sm.*field = part;
  cluster.sync();
  T r = cluster.map_shared_rank(&sm, 0)->*field;
  for (int b = 1; b < kCluster; ++b) r = op(r, cluster.map_shared_rank(&sm, b)->*field);
  cluster.sync();  // before the field is written again
  return r;
}

// Radix select over the cluster's row. Among the tokens `elem` admits (elem(i, key,
// weight) -> bool), walked in key order (descending if kDesc, else ascending), finds the
// key K where the accumulated weight first reaches `target` (>= 1): weight(before K) <
// target <= weight(through K). Returns K; `before` and `at` get the weight before K and the
// weight at K. kCount: every weight is 1 (a warp's lanes in one bin add once: few bins are
// hot in the first pass).
template <bool kDesc, bool kCount, typename Elem>
__device__ uint32_t radix_select(int64_t V, Elem elem, uint64_t target, SampleSmem& sm, uint64_t& before, uint64_t& at) {
  cg::cluster_group cluster = cg::this_cluster();
  const Slice sl = my_slice();
  uint32_t prefix = 0, mask = 0;
  uint64_t acc = 0;
  const int lane = threadIdx.x & 31;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sm.hist[i] = 0;
    __syncthreads();
    for (int64_t base = sl.first - threadIdx.x; base < V; base += sl.stride) {  // the same trip count in every lane
      const int64_t i = base + threadIdx.x;
      uint32_t key = 0;
      uint64_t w = 0;
      const bool in = i < V && elem(i, key, w) && (key & mask) == prefix;
      const uint32_t bin = in ? (key >> shift) & 255u : 256u;
      if (kCount) {
        if (!__any_sync(0xffffffffu, in)) continue;  // (warp-uniform) later passes admit few tokens
        const unsigned peers = __match_any_sync(0xffffffffu, bin);
        if (in && lane == __ffs(peers) - 1) atomicAdd(&sm.hist[bin], (unsigned long long)__popc(peers));
      } else if (in && w) {
        atomicAdd(&sm.hist[bin], (unsigned long long)w);
      }
    }
    cluster.sync();  // every block's histogram complete
    if (threadIdx.x < 32) {  // warp 0 of each block walks the merged bins: lane l takes walk positions 8l..8l+7
      const auto bin_at = [](int pos) { return kDesc ? 255 - pos : pos; };
      const auto merged = [&](int bin) {
        uint64_t h = 0;
        for (int b = 0; b < kCluster; ++b) h += cluster.map_shared_rank(sm.hist, b)[bin];
        return h;
      };
      uint64_t mine[8], local = 0;
      for (int j = 0; j < 8; ++j) local += mine[j] = merged(bin_at(8 * lane + j));
      uint64_t inc = local;
      for (int o = 1; o < 32; o <<= 1) {
        const uint64_t v = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += v;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, acc + inc >= target);
      const int owner = hit ? __ffs(hit) - 1 : 31;  // (target beyond the total: the last bin)
      if (lane == owner) {
        uint64_t c = acc + inc - local;
        int j = 0;
        for (; j < 7 && c + mine[j] < target; ++j) c += mine[j];
        sm.pick[0] = uint64_t(bin_at(8 * owner + j));
        sm.pick[1] = c;
        sm.pick[2] = mine[j];
      }
    }
    __syncthreads();
    const uint32_t d = uint32_t(sm.pick[0]);
    acc = sm.pick[1];
    at = sm.pick[2];
    prefix |= d << shift;
    mask |= 255u << shift;
    cluster.sync();  // no block clears its histogram while another still reads it
  }
  before = acc;
  return prefix;
}

// The best (value, index) of the cluster: larger value, then lower index.
template <typename T>
__device__ int32_t cluster_best(T best, int32_t idx, T SampleSmem::*vf, SampleSmem& sm, T* sv, int32_t* si) {
  block_best(best, idx, sv, si);
  cg::cluster_group cluster = cg::this_cluster();
  if (threadIdx.x == 0) sm.*vf = best, sm.part_i = idx;
  cluster.sync();
  for (int b = 0; b < kCluster; ++b) {
    const SampleSmem* o = cluster.map_shared_rank(&sm, b);
    const T v = o->*vf;
    const int32_t i = o->part_i;
    if (v > best || (v == best && i < idx)) best = v, idx = i;
  }
  cluster.sync();
  return idx;
}

// The shortlist: a row's largest tokens gathered into shared memory, so that a top-k / top-N
// is ranked there instead of radix-selected over the row. The max pass records each warp's
// maximum (record_warp_max); the bound T is the (r+1)-th largest of the cluster's 128 warp
// maxima (kShortlistMaxima), so r+1 warps each hold a token >= T: the tokens with x_i >= T
// (one more pass collects them) are at least r+1 (warps without a number aside) and
// include every token above T. Every other token has a smaller x (or is NaN).
constexpr int kWarps = kThreads / 32;
constexpr int kShortlistMaxima = kCluster * kWarps;
constexpr int kShortlistCap = kThreads;  // one candidate per thread when ranking

struct Shortlist {
  float warp_max[kWarps];               // this block's, from the max pass
  float maxima[kShortlistMaxima];       // the cluster's, gathered
  uint32_t key[kShortlistCap];          // this block's candidates (n of them; past the cap: too many)
  int32_t id[kShortlistCap];
  uint32_t gkey[kShortlistCap];         // the cluster's, ranked: (key descending, id ascending)
  int32_t gid[kShortlistCap];
  int n;
  float bound;                          // T
};

// Each warp's maximum of `m` (its lanes' maxima) into sh.warp_max; read by the cluster after
// the next cluster.sync.
__device__ __forceinline__ void record_warp_max(float m, Shortlist& sh) {
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) sh.warp_max[threadIdx.x >> 5] = m;
}

// Collects the tokens with x_i >= T (T: the maximum of rank r, 0-based, r <
// kShortlistMaxima), ranks them by (key_of(i) descending, i ascending) into sh.gkey /
// sh.gid in every block of the cluster, and returns their count; -1 (nothing gathered)
// beyond kShortlistCap. key_of must be non-decreasing in x_i. Call after the cluster.sync
// that follows record_warp_max, from every thread of the cluster.
template <typename KeyOf>
__device__ int shortlist(int64_t V, const float* x, int r, KeyOf key_of, Shortlist& sh) {
  cg::cluster_group cluster = cg::this_cluster();
  const Slice sl = my_slice();
  const int t = int(threadIdx.x), lane = t & 31;
  if (t < kShortlistMaxima) sh.maxima[t] = cluster.map_shared_rank(sh.warp_max, t / kWarps)[t % kWarps];
  if (t == 0) sh.n = 0;
  __syncthreads();
  if (t < kShortlistMaxima) {  // rank in (value descending, position ascending)
    const float m = sh.maxima[t];
    int rank = 0;
    for (int u = 0; u < kShortlistMaxima; ++u) rank += sh.maxima[u] > m || (sh.maxima[u] == m && u < t);
    if (rank == r) sh.bound = m;
  }
  __syncthreads();
  const float bound = sh.bound;
  for (int64_t base = sl.first - t; base < V; base += sl.stride) {  // the same trip count in every lane
    const int64_t i = base + t;
    const bool in = i < V && x[i] >= bound;
    const unsigned ballot = __ballot_sync(0xffffffffu, in);
    if (!ballot) continue;
    int first = 0;
    if (lane == __ffs(ballot) - 1) first = atomicAdd(&sh.n, __popc(ballot));
    const int slot = __shfl_sync(0xffffffffu, first, __ffs(ballot) - 1) + __popc(ballot & ((1u << lane) - 1));
    if (in && slot < kShortlistCap) sh.key[slot] = key_of(i), sh.id[slot] = int32_t(i);
  }
  cluster.sync();  // every block's candidates complete
  int c = 0;
  for (int b = 0; b < kCluster; ++b) c += cluster.map_shared_rank(&sh, b)->n;  // (the same sum in every block)
  if (c > kShortlistCap) {
    cluster.sync();  // no block moves on while another still reads its count
    return -1;
  }
  uint32_t k = 0;
  int32_t id = 0;
  if (t < c) {  // gather in block-rank order
    int b = 0, off = t;
    for (; b < kCluster; ++b) {
      const int nb = cluster.map_shared_rank(&sh, b)->n;
      if (off < nb) break;
      off -= nb;
    }
    const Shortlist* src = cluster.map_shared_rank(&sh, b);
    k = src->key[off], id = src->id[off];
    sh.gkey[t] = k, sh.gid[t] = id;
  }
  cluster.sync();  // the gathers done: blocks may leave
  int rank = 0;
  if (t < c)
    for (int u = 0; u < c; ++u) rank += sh.gkey[u] > k || (sh.gkey[u] == k && sh.gid[u] < id);
  __syncthreads();
  if (t < c) sh.gkey[rank] = k, sh.gid[rank] = id;
  __syncthreads();
  return c;
}

// Top-p over the shortlist's top k (ranks [0, k) of sh: key descending, id ascending): how
// many leading ranks it keeps, the same tokens as the radix path's boundary (Kp, Ip) (a
// prefix in that order): the first key where the running mass reaches the target, its ties
// cut by id where only some are needed. -1 when the walk never reaches the target (no
// positive mass; cannot happen, as the max has p = 1): the radix path decides.
template <typename Mass>
__device__ int shortlist_top_p(const Shortlist& sh, int k, float top_p, Mass mass) {
  if (!(top_p < 1.0f)) return k;
  uint64_t S = 0;
  for (int r = 0; r < k; ++r) S += mass(key_value(sh.gkey[r]));
  const double goal = double(top_p) * double(S);
  const uint64_t up = uint64_t(ceil(goal)), target = up < 1 ? 1 : up > S ? S : up;
  uint64_t acc = 0;
  for (int r = 0; r < k;) {
    const uint32_t key = sh.gkey[r];
    int end = r;
    while (end < k && sh.gkey[end] == key) ++end;
    const uint64_t q = mass(key_value(key)), at = q * uint64_t(end - r);  // every tie has mass q
    if (at != 0 && acc + at >= target) {
      const uint64_t ties = at / q, need = uint64_t(ceil((goal - double(acc)) / double(q)));
      return need >= 1 && need < ties ? r + int(need) : end;
    }
    acc += at;
    r = end;
  }
  return -1;
}

__global__ void __cluster_dims__(kCluster, 1, 1) __launch_bounds__(kThreads, 2) sample_kernel(SampleParams p) {
  __shared__ SampleSmem sm;
  __shared__ double sv[32];
  __shared__ int32_t si[32];
  __shared__ unsigned long long su[32];
  __shared__ Shortlist sh;
  pdl_wait();
  pdl_launch_dependents();
  const int64_t V = p.V, row = blockIdx.x / kCluster;
  const float* x = p.x + row * V;
  const RowSampling rs = p.params[row];
  const Slice sl = my_slice();
  const bool lead_block = cg::this_cluster().block_rank() == 0, lead = lead_block && threadIdx.x == 0;
  if (rs.forced >= 0) {  // a teacher-forced row: its token is given (every block of the cluster leaves here)
    if (lead) p.out[row] = rs.forced;
    return;
  }
  if (rs.temperature == 0.0f) {  // argmax, as argmax_kernel
    float best;
    int32_t idx;
    thread_argmax(x, V, sl.first, sl.stride, best, idx);
    idx = cluster_best(best, idx, &SampleSmem::part_f, sm, reinterpret_cast<float*>(sv), si);
    if (lead) p.out[row] = idx == INT_MAX ? 0 : idx;
    return;
  }
  // p_i = exp(l_i / T - max / T) in fp32, multiply and subtract unfused as on the CPU.
  const bool use_k = rs.top_k > 0 && rs.top_k < V;
  const bool use_shortlist = p.shortlist && use_k && rs.top_k <= kShortlistMaxima;
  float mxl = -INFINITY;
  for (int64_t i = sl.first; i < V; i += sl.stride) mxl = fmaxf(mxl, x[i]);
  if (use_shortlist) record_warp_max(mxl, sh);  // (cluster_fold syncs)
  const auto fmax_op = [](float a, float b) { return fmaxf(a, b); };
  mxl = cluster_fold(block_reduce(mxl, fmax_op, reinterpret_cast<float*>(sv)), &SampleSmem::part_f, sm, fmax_op);
  const float inv_t = 1.0f / rs.temperature, mx = __fmul_rn(mxl, inv_t);
  const auto prob = [&](float l) { return expf(__fsub_rn(__fmul_rn(l, inv_t), mx)); };
  const auto mass = [&](float l) { return (uint64_t)__double2ull_rz(double(prob(l)) * p.mass_scale); };
  const auto gumbel_score = [&](float l, int64_t i, double& score) {  // false: not a candidate of the draw
    const float lp = __fsub_rn(__fmul_rn(l, inv_t), mx);  // log p_i before the exp
    if (!(lp >= kSampleHopelessLogProb)) return false;    // no draw lifts it to a win
    const float pr = expf(lp);
    if (!(pr > 0.f) || (rs.min_p > 0.f && double(pr) < double(rs.min_p))) return false;
    const double g = -log(-log(keyed_uniform(rs.seed, rs.position, i)));
    score = log(double(pr)) + g;
    return true;
  };

  if (use_shortlist) {  // the top k from the shortlist of the k largest warp maxima
    const int k = rs.top_k;
    const int c = shortlist(V, x, k - 1, [&](int64_t i) { return order_key(x[i]); }, sh);
    if (c >= k) {  // the top-k candidates are ranks [0, k) of sh.gkey / sh.gid
      __shared__ int kept;  // top-p keeps ranks [0, kept); -1: the shortlist cannot tell (the radix path)
      if (threadIdx.x == 0) kept = shortlist_top_p(sh, k, rs.top_p, mass);
      __syncthreads();
      if (kept >= 0) {
        if (!lead_block) return;
        double best = -INFINITY;
        int32_t idx = INT_MAX;
        if (int(threadIdx.x) < kept) {
          double score;
          const int32_t i = sh.gid[threadIdx.x];
          if (gumbel_score(key_value(sh.gkey[threadIdx.x]), i, score)) best = score, idx = i;
        }
        block_best(best, idx, sv, si);
        if (threadIdx.x == 0) {
          p.out[row] = idx == INT_MAX ? 0 : idx;
          if (p.shortlist_rows) atomicAdd(p.shortlist_rows, 1);
        }
        return;
      }
    }
  }

  // Top-k boundary (Kk, Ik).
  uint32_t Kk = 0;
  int32_t Ik = INT_MAX;
  if (use_k) {
    uint64_t before = 0, at = 0;
    Kk = radix_select<true, true>(
        V, [&](int64_t i, uint32_t& key, uint64_t& w) { key = order_key(x[i]); w = 1; return true; }, uint64_t(rs.top_k), sm,
        before, at);
    const uint64_t need = uint64_t(rs.top_k) - before;  // ties at Kk taken, lowest ids first
    if (need < at) {
      uint64_t b2 = 0, a2 = 0;
      Ik = int32_t(radix_select<false, true>(
          V, [&](int64_t i, uint32_t& key, uint64_t& w) { key = uint32_t(i); w = 1; return order_key(x[i]) == Kk; }, need,
          sm, b2, a2));
    }
  }
  const auto in_k = [&](int64_t i, uint32_t key) { return !use_k || key > Kk || (key == Kk && i <= Ik); };

  // Top-p boundary (Kp, Ip): the token where the mass before it, in order, stops being
  // below top_p * S (S: the top-k candidates' mass).
  const bool use_p = rs.top_p < 1.0f;
  uint32_t Kp = 0;
  int32_t Ip = INT_MAX;
  if (use_p) {
    unsigned long long s = 0;
    for (int64_t i = sl.first; i < V; i += sl.stride)
      if (in_k(i, order_key(x[i]))) s += mass(x[i]);
    const auto add = [](unsigned long long a, unsigned long long b) { return a + b; };
    const uint64_t S = cluster_fold(block_reduce(s, add, su), &SampleSmem::part_u, sm, add);
    const double goal = double(rs.top_p) * double(S);
    const uint64_t up = uint64_t(ceil(goal)), target = up < 1 ? 1 : up > S ? S : up;
    uint64_t before = 0, at = 0;
    Kp = radix_select<true, false>(
        V,
        [&](int64_t i, uint32_t& key, uint64_t& w) {
          key = order_key(x[i]);
          w = in_k(i, key) ? mass(x[i]) : 0;
          return w != 0;
        },
        target, sm, before, at);
    const uint64_t q = mass(key_value(Kp));  // every tie at Kp has this mass
    if (q > 0) {
      const uint64_t ties = at / q, need = uint64_t(ceil((goal - double(before)) / double(q)));
      if (need >= 1 && need < ties) {
        uint64_t b2 = 0, a2 = 0;
        Ip = int32_t(radix_select<false, true>(
            V,
            [&](int64_t i, uint32_t& key, uint64_t& w) {
              const uint32_t k = order_key(x[i]);
              key = uint32_t(i);
              w = 1;
              return k == Kp && in_k(i, k);
            },
            need, sm, b2, a2));
      }
    }
  }
  const auto in_p = [&](int64_t i, uint32_t key) { return !use_p || key > Kp || (key == Kp && i <= Ip); };

  // Gumbel-max over the kept tokens (min-p: p_i >= min_p, as p_max == 1).
  double best = -INFINITY;
  int32_t idx = INT_MAX;
  for (int64_t i = sl.first; i < V; i += sl.stride) {
    const uint32_t key = order_key(x[i]);
    double score;
    if (!in_k(i, key) || !in_p(i, key) || !gumbel_score(x[i], i, score)) continue;
    if (score > best || (score == best && int32_t(i) < idx)) best = score, idx = int32_t(i);
  }
  idx = cluster_best(best, idx, &SampleSmem::part_d, sm, sv, si);
  if (lead) p.out[row] = idx == INT_MAX ? 0 : idx;
}

// ---- row_logprobs: the output logprobs of each row's chosen token --------------------
// One cluster per row, as sample_kernel, reusing its folds and radix select. Normalizer:
// the row's fp32 max (each thread's elements, block_reduce, cluster_fold in block-rank
// order); then sum of double(expf(x_i - max)): each thread adds its elements in increasing
// i, block_reduce (warp butterfly, then warps 0..15 in order), cluster_fold (blocks 0..7 in
// order); lse = max + float(log(sum)); lp_i = x_i - lse. Top-N (lp descending, then id
// ascending; lp -0.0 counts as +0.0, the CPU's == ties) comes from one of two paths that
// give the same tokens and bits:
// - the shortlist (3 passes over the row, the default): T = the (N+1)-th largest of the
//   cluster's 128 warp maxima (from the max pass) bounds the (N+1)-th largest logit from
//   below, so the tokens with x_i >= T (one more pass collects them, at most
//   kShortlistCap) are N+1 or more and hold the top N; each block ranks them in shared
//   memory. Every other token has a smaller x, hence an lp at most the smallest
//   candidate's: when that smallest lp is below the N-th candidate's, no other token can
//   reach or tie the top N, and the candidates' top N is the row's. Otherwise (ties there,
//   too many candidates on a flat row, NaN or infinite logits) the radix path answers.
// - the radix path (7 passes): the N-th largest lp key (count-weighted radix select, as
//   top-k), a partial tie there split by the select over ids: exactly N tokens; each block
//   collects its own in shared memory and the lead block ranks them.
static_assert(kRowLogprobsMaxTop < kShortlistMaxima, "the shortlist's bound needs N + 1 warp maxima");
struct TopSmem {
  uint32_t key[kRowLogprobsMaxTop];
  int32_t id[kRowLogprobsMaxTop];
  int n;
};

__global__ void __cluster_dims__(kCluster, 1, 1) __launch_bounds__(kThreads, 2) logprobs_kernel(RowLogprobsParams p) {
  __shared__ SampleSmem sm;
  __shared__ double sv[32];
  __shared__ TopSmem top;
  __shared__ Shortlist sh;
  __shared__ uint32_t mkey[kRowLogprobsMaxTop];  // lead block: every block's candidates
  __shared__ int32_t mid[kRowLogprobsMaxTop];
  pdl_wait();
  pdl_launch_dependents();
  const int64_t V = p.V, row = blockIdx.x / kCluster;
  const RowLogprobs& rq = p.params[row];
  const int top_n = rq.top_n;
  if (top_n < 0) return;  // (the whole cluster)
  const float* x = p.x + row * V;
  const Slice sl = my_slice();
  cg::cluster_group cluster = cg::this_cluster();
  const bool lead = cluster.block_rank() == 0;
  const int n = int64_t(top_n) < V ? top_n : int(V);
  const bool use_shortlist = p.shortlist && n > 0;

  float mx = -INFINITY;
  for (int64_t i = sl.first; i < V; i += sl.stride) mx = fmaxf(mx, x[i]);
  if (use_shortlist) record_warp_max(mx, sh);  // (cluster_fold syncs)
  const auto fmax_op = [](float a, float b) { return fmaxf(a, b); };
  mx = cluster_fold(block_reduce(mx, fmax_op, reinterpret_cast<float*>(sv)), &SampleSmem::part_f, sm, fmax_op);
  double s = 0.0;
  for (int64_t i = sl.first; i < V; i += sl.stride) s += double(expf(__fsub_rn(x[i], mx)));
  const auto add = [](double a, double b) { return a + b; };
  s = cluster_fold(block_reduce(s, add, sv), &SampleSmem::part_d, sm, add);
  const float lse = __fadd_rn(mx, float(log(s)));
  const auto lp = [&](int64_t i) { return __fsub_rn(x[i], lse); };

  RowLogprobsOut& o = p.out[row];
  if (lead) {
    if (threadIdx.x == 0) o.logprob = lp(p.chosen[row]);
    for (int j = threadIdx.x; j < rq.num_ids; j += blockDim.x) o.id_logprobs[j] = lp(rq.ids[j]);
  }
  if (n == 0) return;
  const auto key_of = [&](int64_t i) { return order_key(__fadd_rn(lp(i), 0.0f)); };  // -0.0 -> +0.0
  if (use_shortlist) {  // the top N from the shortlist of the N+1 largest warp maxima
    const int c = shortlist(V, x, n, key_of, sh);
    // The smallest candidate's key (the largest any other token can have) below the N-th's:
    // the candidates' top N is the row's.
    if (c > n && sh.gkey[c - 1] < sh.gkey[n - 1]) {
      if (lead && int(threadIdx.x) < n) {
        o.top_ids[threadIdx.x] = sh.gid[threadIdx.x];
        o.top_logprobs[threadIdx.x] = key_value(sh.gkey[threadIdx.x]);
      }
      if (lead && threadIdx.x == 0 && p.shortlist_rows) atomicAdd(p.shortlist_rows, 1);
      return;
    }
  }
  uint64_t before = 0, at = 0;
  const uint32_t K = radix_select<true, true>(
      V, [&](int64_t i, uint32_t& key, uint64_t& w) { key = key_of(i); w = 1; return true; }, uint64_t(n), sm, before,
      at);
  const uint64_t need = uint64_t(n) - before;  // ties at K taken, lowest ids first
  int32_t I = INT_MAX;
  if (need < at) {
    uint64_t b2 = 0, a2 = 0;
    I = int32_t(radix_select<false, true>(
        V, [&](int64_t i, uint32_t& key, uint64_t& w) { key = uint32_t(i); w = 1; return key_of(i) == K; }, need, sm, b2,
        a2));
  }
  if (threadIdx.x == 0) top.n = 0;
  __syncthreads();
  for (int64_t i = sl.first; i < V; i += sl.stride) {
    const uint32_t key = key_of(i);
    if (key > K || (key == K && int32_t(i) <= I)) {
      const int slot = atomicAdd(&top.n, 1);
      if (slot < kRowLogprobsMaxTop) top.key[slot] = key, top.id[slot] = int32_t(i);
    }
  }
  cluster.sync();  // every block's candidates complete
  if (lead && threadIdx.x < kCluster * kRowLogprobsMaxTop) {
    const int b = threadIdx.x / kRowLogprobsMaxTop, j = threadIdx.x % kRowLogprobsMaxTop;
    const TopSmem* src = cluster.map_shared_rank(&top, b);
    if (j < min(src->n, kRowLogprobsMaxTop)) {
      int off = 0;
      for (int c = 0; c < b; ++c) off += min(cluster.map_shared_rank(&top, c)->n, kRowLogprobsMaxTop);
      if (off + j < kRowLogprobsMaxTop) mkey[off + j] = src->key[j], mid[off + j] = src->id[j];
    }
  }
  cluster.sync();  // the lead's reads done (blocks may exit); its merged list visible
  if (lead && int(threadIdx.x) < n) {
    const uint32_t k = mkey[threadIdx.x];
    const int32_t id = mid[threadIdx.x];
    int rank = 0;
    for (int u = 0; u < n; ++u) rank += mkey[u] > k || (mkey[u] == k && mid[u] < id);
    o.top_ids[rank] = id;
    o.top_logprobs[rank] = key_value(k);
  }
}

// One thread per edit (the edits name distinct logits). The _rn intrinsics keep nvcc from
// fusing l * rep - sub into one FMA: each step rounds on its own, as on the CPU.
__global__ void logit_edits_kernel(LogitEditParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.n) return;
  const LogitEdit e = p.edits[i];
  float* x = p.x + int64_t(e.row) * p.V + e.token;
  float l = *x;
  if (p.saved) p.saved[i] = l;
  if (e.rep != 1.0f) l = l > 0 ? __fdiv_rn(l, e.rep) : __fmul_rn(l, e.rep);
  l = __fsub_rn(l, e.sub);
  if (e.mask) l = -INFINITY;
  *x = l;
}

__global__ void restore_logits_kernel(LogitEditParams p) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.n) return;
  const LogitEdit e = p.edits[i];
  p.x[int64_t(e.row) * p.V + e.token] = p.saved[i];
}

}  // namespace

void argmax_rows(const ArgmaxParams& p, cudaStream_t s) {
  if (p.rows == 0) return;
  launch_pdl(argmax_kernel, dim3(unsigned(p.rows)), dim3(kArgmaxThreads), 0, s, p);
}

// Two 512-thread blocks per SM need more than the smallest shared-memory carveout.
static void prefer_shared(const void* kernel, std::atomic<uint64_t>& configured) {
  if (first_use_on_device(configured))
    cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared));
}

void sample_rows(const SampleParams& p, cudaStream_t s) {
  if (p.rows == 0) return;
  static std::atomic<uint64_t> configured{0};  // once per device, before any graph capture
  prefer_shared(reinterpret_cast<const void*>(sample_kernel), configured);
  launch_pdl(sample_kernel, dim3(unsigned(p.rows * kCluster)), dim3(kThreads), 0, s, p);
}

void apply_logit_edits(const LogitEditParams& p, cudaStream_t s) {
  if (p.n == 0) return;
  logit_edits_kernel<<<unsigned((p.n + 255) / 256), 256, 0, s>>>(p);
}

void restore_logits(const LogitEditParams& p, cudaStream_t s) {
  if (p.n == 0) return;
  restore_logits_kernel<<<unsigned((p.n + 255) / 256), 256, 0, s>>>(p);
}

void row_logprobs(const RowLogprobsParams& p, cudaStream_t s) {
  if (p.rows == 0) return;
  static std::atomic<uint64_t> configured{0};
  prefer_shared(reinterpret_cast<const void*>(logprobs_kernel), configured);
  launch_pdl(logprobs_kernel, dim3(unsigned(p.rows * kCluster)), dim3(kThreads), 0, s, p);
}

}  // namespace sparrow::cuda::k
