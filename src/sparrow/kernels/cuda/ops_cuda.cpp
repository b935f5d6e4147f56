// Host side of the CUDA backend: validation, then the kernels of kernels.h or cuBLASLt.
#include "sparrow/kernels/cuda/ops_cuda.h"

#include <cublasLt.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "sparrow/kernels/cuda/kernels.h"
#include "sparrow/kernels/cuda/rank_tree_sum.h"

namespace sparrow::ops::cuda {

namespace kn = ::sparrow::cuda::k;
namespace {

using ::sparrow::cuda::current_stream;

void check_dev(const Tensor& t, const char* what) {
  SPARROW_REQUIRE(t.device() == Device::kCUDA, "{}: CUDA tensor expected", what);
  SPARROW_REQUIRE(t.is_contiguous(), "{}: contiguous tensor expected, got {}", what, t.shape().str());
}
bool is_float(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }
void check_float(const Tensor& t, const char* what) {
  SPARROW_REQUIRE(is_float(t.dtype()), "{}: f32, bf16 or f16 expected, got {}", what, dtype_name(t.dtype()));
}

Tensor as_matrix(const Tensor& t, const char* what) {
  SPARROW_REQUIRE(t.rank() >= 1, "linear: {} must have rank >= 1", what);
  if (t.rank() == 2) {
    SPARROW_REQUIRE(t.size(1) <= 1 || t.stride(1) == 1, "linear: {} rows must be contiguous", what);
    return t;
  }
  SPARROW_REQUIRE(t.is_contiguous(), "linear: {} must be contiguous", what);
  const int64_t last = t.size(-1);
  return t.view(Shape{last ? t.numel() / last : 0, last});
}

#define CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                       \
    const cublasStatus_t st_ = (expr);                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      throw_error("{}:{}: cuBLASLt error {} ({}) in {}", __FILE__, __LINE__, int(st_),       \
                  cublasLtGetStatusString(st_), #expr);                                      \
  } while (0)

// ---- cuBLASLt: one handle per device, and a 32 MiB workspace per stream (allocated on the
// stream's first GEMM, i.e. at warm-up, never in the decode loop): GEMMs in flight on two
// streams of one device (ranks sharing a GPU) must not share scratch. Heuristics cached
// per shape.
struct Lt {
  cublasLtHandle_t handle = nullptr;
  std::map<cudaStream_t, ::sparrow::cuda::DeviceBuffer> workspaces;
  std::mutex mu;
  static constexpr size_t kWorkspaceBytes = size_t(32) << 20;
  const ::sparrow::cuda::DeviceBuffer& workspace(cudaStream_t s) {  // under mu
    auto& w = workspaces[s];
    if (w.data() == nullptr) w = ::sparrow::cuda::DeviceBuffer(kWorkspaceBytes);
    return w;
  }
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::map<Key, Plan> plans;
  static Lt& get() {
    static constexpr int kMaxDevices = 64;
    static std::unique_ptr<Lt> per_device[kMaxDevices];
    static std::once_flag made[kMaxDevices];
    int dev = 0;
    SPARROW_CUDA_CHECK(cudaGetDevice(&dev));
    SPARROW_CHECK(dev < kMaxDevices, "cuBLASLt: device {} beyond {}", dev, kMaxDevices);
    std::call_once(made[dev], [&] { per_device[dev] = std::make_unique<Lt>(); });  // no lock once made
    return *per_device[dev];
  }
  Lt() {
    CUBLAS_CHECK(cublasLtCreate(&handle));
  }
};

int alignment_of(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 2 && (v % uintptr_t(a)) != 0) a /= 2;
  return a;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    default: throw_error("cuBLASLt: unsupported dtype {}", dtype_name(t));
  }
}

// Column-major view: C[N, T] = W[K, N]^T * X[K, T], i.e. row-major y[T, N] = x w^T.
void lt_matmul(const Tensor& x, const Tensor& w, const Tensor& y, int64_t ldx, int64_t ldw, int64_t ldy) {
  Lt& lt = Lt::get();
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  const int al = std::min({alignment_of(x.data()), alignment_of(w.data()), alignment_of(y.data())});
  const Lt::Key key{T, N, K, ldx, ldw, ldy, int(y.dtype()), int(x.dtype()), al};
  std::lock_guard<std::mutex> lock(lt.mu);
  auto it = lt.plans.find(key);
  if (it == lt.plans.end()) {
    Lt::Plan p;
    const cudaDataType_t in = cuda_type(x.dtype()), out = cuda_type(y.dtype());
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, uint64_t(K), uint64_t(N), ldw));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, uint64_t(K), uint64_t(T), ldx));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, out, uint64_t(N), uint64_t(T), ldy));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = Lt::kWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const uint32_t a32 = uint32_t(al);
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &a32, sizeof(a32)));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt.handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found));
    cublasLtMatmulPreferenceDestroy(pref);
    SPARROW_CHECK(found > 0, "cuBLASLt found no algorithm for y[{}, {}] = x[{}, {}] w^T", T, N, T, K);
    p.algo = res.algo;
    it = lt.plans.emplace(key, p).first;
  }
  const float alpha = 1.f, beta = 0.f;
  const Lt::Plan& p = it->second;
  const cudaStream_t s = current_stream();
  const ::sparrow::cuda::DeviceBuffer& ws = lt.workspace(s);
  CUBLAS_CHECK(cublasLtMatmul(lt.handle, p.op, &alpha, w.data(), p.a, x.data(), p.b, &beta, y.data(), p.c,
                              y.data(), p.c, &p.algo, ws.data(), ws.nbytes(), s));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

void release_stream_workspace(cudaStream_t stream) {
  Lt& lt = Lt::get();
  std::lock_guard<std::mutex> lock(lt.mu);
  lt.workspaces.erase(stream);  // (the caller has finished the stream's work)
}

void linear_with(GemmBackend backend, const Tensor& x_in, const Tensor& w, const Tensor* bias, const Tensor& y_in) {
  SPARROW_REQUIRE(x_in.device() == Device::kCUDA && w.device() == Device::kCUDA &&
                      y_in.device() == Device::kCUDA && (!bias || bias->device() == Device::kCUDA),
                  "linear: all tensors must be on the GPU");
  SPARROW_REQUIRE(w.rank() == 2 && (w.size(1) <= 1 || w.stride(1) == 1), "linear: w must be [N, K] with contiguous rows");
  SPARROW_REQUIRE(x_in.dtype() == w.dtype() && (w.dtype() == DType::kBF16 || w.dtype() == DType::kF32),
                  "linear: x and w must both be bf16 or both f32 (got {} and {})", dtype_name(x_in.dtype()),
                  dtype_name(w.dtype()));
  check_float(y_in, "linear y");
  const Tensor x = as_matrix(x_in, "x"), y = as_matrix(y_in, "y");
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  SPARROW_REQUIRE(w.size(1) == K, "linear: x {} and w {} disagree on K", x_in.shape().str(), w.shape().str());
  SPARROW_REQUIRE(y.size(0) == T && y.size(1) == N, "linear: y {} must be [{}, {}]", y_in.shape().str(), T, N);
  if (bias)
    SPARROW_REQUIRE(bias->numel() == N && (bias->dtype() == DType::kF32 || bias->dtype() == w.dtype()),
                    "linear: bias must be [{}] of f32 or {}", N, dtype_name(w.dtype()));
  if (T == 0 || N == 0) return;
  const int64_t ldx = T > 1 ? x.stride(0) : K, ldw = N > 1 ? w.stride(0) : K, ldy = T > 1 ? y.stride(0) : N;
  const bool tc_ok = w.dtype() == DType::kBF16 && K % 8 == 0 && ldx % 8 == 0 && ldw % 8 == 0 &&
                     aligned16(x.data()) && aligned16(w.data());
  if (!tc_ok) {
    kn::LinearSimtParams p{x.data(), x.dtype(), ldx, w.data(), ldw, bias ? bias->data() : nullptr,
                          bias ? bias->dtype() : DType::kF32, y.data(), y.dtype(), ldy, T, N, K};
    kn::linear_simt(p, current_stream());
    SPARROW_CUDA_CHECK_LAUNCH("linear_simt");
    return;
  }
  if (backend == GemmBackend::kAuto) {
    if (::sparrow::cuda::deterministic()) {
      backend = GemmBackend::kFixed;
    } else if (T <= kn::kGemvMaxRows) {
      backend = GemmBackend::kGemv;  // decode-sized: a streaming pass over the weights
    } else {
      backend = bias ? GemmBackend::kFixed : GemmBackend::kCublasLt;
    }
  }
  if (backend == GemmBackend::kGemv) {
    SPARROW_REQUIRE(T <= kn::kGemvMaxRows, "linear: the skinny kernel takes at most {} rows, got {}", kn::kGemvMaxRows, T);
    kn::gemv_bf16({x.data_as<uint16_t>(), ldx, w.data_as<uint16_t>(), ldw, bias ? bias->data() : nullptr,
                   bias ? bias->dtype() : DType::kF32, y.data(), y.dtype(), ldy, T, N, K},
                  current_stream());
    SPARROW_CUDA_CHECK_LAUNCH("gemv_bf16");
    return;
  }
  if (backend == GemmBackend::kCublasLt) {
    SPARROW_REQUIRE(!bias, "linear: the cuBLASLt path takes no bias");
    lt_matmul(x, w, y, ldx, ldw, ldy);
    return;
  }
  kn::GemmParams p{};
  p.mode = kn::GemmMode::kDense;
  p.a = x.data_as<uint16_t>();
  p.lda = ldx;
  p.b = w.data_as<uint16_t>();
  p.ldb = ldw;
  p.M = T;
  p.N = N;
  p.K = K;
  p.c = y.data();
  p.c_t = y.dtype();
  p.ldc = ldy;
  p.bias = bias ? bias->data() : nullptr;
  p.bias_t = bias ? bias->dtype() : DType::kF32;
  kn::gemm_bf16(p, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("gemm_bf16 dense");
}

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  linear_with(GemmBackend::kAuto, x, w, bias, y);
}

void paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const AttentionBatch& batch,
                     float scale, const Tensor& out) {
  for (const Tensor* t : {&q, &k_cache, &v_cache, &out}) check_dev(*t, "paged_attention");
  SPARROW_REQUIRE(q.rank() == 3 && k_cache.rank() == 3 && v_cache.rank() == 3 && out.shape() == q.shape(),
                  "paged_attention: q/out [T, Hq, D], caches [slots, Hkv, D]");
  const DType dt = q.dtype();
  SPARROW_REQUIRE((dt == DType::kBF16 || dt == DType::kF32) && k_cache.dtype() == dt &&
                      v_cache.dtype() == dt && out.dtype() == dt,
                  "paged_attention: q, caches and out must share a dtype (bf16 or f32)");
  const int64_t D = q.size(2), Hq = q.size(1), Hkv = k_cache.size(1);
  SPARROW_REQUIRE(k_cache.size(2) == D && v_cache.shape() == k_cache.shape() && kn::attention_shape_ok(Hq, Hkv, D),
                  "paged_attention: {} query heads over {} KV heads of dim {} (max dim {}, group {})", Hq, Hkv, D,
                  kn::kAttnMaxHeadDim, Hkv ? Hq / Hkv : 0);
  SPARROW_REQUIRE(batch.batch >= 0 && batch.max_context > 0, "paged_attention: negative batch or empty context");
  if (batch.batch == 0 || q.size(0) == 0) return;
  const int64_t split = kn::attention_split_size(batch.max_context);
  const bool split_shape = batch.scratch && q.size(0) == batch.batch && q.size(0) <= kn::kAttnSplitMaxRows;
  kn::AttentionParams p{q.data(), k_cache.data(), v_cache.data(), out.data(), dt, q.size(0), Hq, Hkv, D,
                       batch.batch, batch.req_slots, batch.seq_lens, batch.extend_lens, batch.q_offsets,
                       batch.req_to_token, batch.max_context, scale, split,
                       int32_t((batch.max_context + split - 1) / split), split_shape ? batch.scratch : nullptr, 0};
  // Default mode, decode-split shape: each context cut into splits by its own length, as
  // many as the batch size leaves room for (attention_decode_splits), instead of the fixed
  // splits of the engine's context length, which leave a short context in one split and a
  // long one in few blocks at small batches. Deterministic mode keeps the fixed splits (a
  // decode then equals an extend bit for bit). SPARROW_ATTN_DYN_SPLITS=0 turns it off.
  static const bool dyn_on = kn::ab_switch_on("SPARROW_ATTN_DYN_SPLITS");
  if (split_shape && dyn_on && !::sparrow::cuda::deterministic()) {
    p.dyn_splits = kn::attention_decode_splits(batch.batch, Hkv);
    p.n_splits = std::max(p.n_splits, p.dyn_splits);  // the partials' stride: paged_attention_scratch_floats sized for it
  }
  // Default mode, extend shape: one split per block (attention_flash.cu); deterministic
  // mode keeps the split structure that makes an extend the same bits as a decode.
  // SPARROW_ATTN_FLASH=0 turns it off (A/B timing).
  static const bool flash_on = kn::ab_switch_on("SPARROW_ATTN_FLASH");
  if (flash_on && !split_shape && !::sparrow::cuda::deterministic() && kn::attention_flash_ok(p))
    kn::paged_attention_flash(p, current_stream());
  else
    kn::paged_attention(p, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("paged_attention");
}

size_t paged_attention_scratch_floats(int64_t T, int64_t Hq, int64_t D, int64_t max_context) {
  if (T > kn::kAttnSplitMaxRows || max_context <= 0) return 0;
  // Room for the fixed splits (deterministic mode) or the default mode's per-length ones,
  // whichever stride is larger; attention_decode_splits(T, 1) bounds it for every Hkv.
  const int64_t split = kn::attention_split_size(max_context);
  const int64_t stride = std::max<int64_t>((max_context + split - 1) / split, kn::attention_decode_splits(T, 1));
  return size_t(T * Hq * stride * (D + 2));
}

void embedding(const Tensor& table, const int32_t* ids, const Tensor& out) {
  check_dev(table, "embedding table");
  check_dev(out, "embedding out");
  SPARROW_REQUIRE(table.rank() == 2 && out.size(-1) == table.size(1), "embedding: widths {} vs {}",
                  out.size(-1), table.size(1));
  const int64_t T = out.numel() / table.size(1);
  kn::embedding({table.data(), table.dtype(), ids, out.data(), out.dtype(), T, table.size(1), table.size(0)},
               current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("embedding");
}

void scatter_rows(const Tensor& src, const int32_t* rows, const Tensor& dst) {
  check_dev(src, "scatter_rows src");
  SPARROW_REQUIRE(dst.device() == Device::kCUDA && dst.is_contiguous(), "scatter_rows: contiguous CUDA dst expected");
  const int64_t t = src.size(0), w = t ? src.numel() / t : 0;
  if (t == 0) return;
  SPARROW_REQUIRE(dst.rank() >= 1 && dst.size(0) > 0 && dst.numel() / dst.size(0) == w,
                  "scatter_rows: row widths differ ({} vs {})", src.shape().str(), dst.shape().str());
  kn::scatter_rows({src.data(), src.dtype(), rows, dst.data(), dst.dtype(), t, w}, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("scatter_rows");
}

void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) {
  check_dev(x, "rms_norm x");
  check_dev(y, "rms_norm y");
  check_dev(w, "rms_norm w");
  const int64_t h = x.size(-1);
  SPARROW_REQUIRE(w.numel() == h && y.numel() == x.numel(), "rms_norm shapes");
  kn::rms_norm({x.data(), x.dtype(), nullptr, DType::kF32, w.data(), w.dtype(), y.data(), y.dtype(),
               h ? x.numel() / h : 0, h, eps},
              current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("rms_norm");
}

void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& w, float eps, const Tensor& y) {
  check_dev(x, "add_rms_norm x");
  check_dev(residual, "add_rms_norm residual");
  check_dev(y, "add_rms_norm y");
  check_dev(w, "add_rms_norm w");
  const int64_t h = x.size(-1);
  SPARROW_REQUIRE(x.numel() == residual.numel() && y.numel() == x.numel() && w.numel() == h,
                  "add_rms_norm shapes");
  kn::rms_norm({x.data(), x.dtype(), residual.data(), residual.dtype(), w.data(), w.dtype(), y.data(), y.dtype(),
               h ? x.numel() / h : 0, h, eps},
              current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("add_rms_norm");
}

void head_rms_norm(const Tensor& x, const Tensor& w, float eps) {
  const int64_t d = x.size(-1);
  SPARROW_REQUIRE(w.numel() == d, "head_rms_norm weight {} vs head dim {}", w.numel(), d);
  rms_norm(x.view({x.numel() / d, d}), w, eps, x.view({x.numel() / d, d}));
}

void rope(const Tensor& x, const int32_t* positions, const float* inv_freq) {
  check_dev(x, "rope x");
  SPARROW_REQUIRE(x.rank() == 3 && x.size(2) % 2 == 0, "rope: x must be [T, heads, even D]");
  kn::rope({x.data(), x.dtype(), positions, inv_freq, x.size(0), x.size(1), x.size(2)}, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("rope");
}

void attention_prep(const Tensor& qkv, int64_t heads, int64_t kv_heads, HeadNorm norm, const Tensor* q_norm,
                    const Tensor* k_norm, float eps, const int32_t* positions, const float* inv_freq,
                    const int32_t* cache_loc, const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache) {
  check_dev(qkv, "attention_prep qkv");
  check_dev(q_out, "attention_prep q_out");
  check_dev(k_cache, "attention_prep k_cache");
  check_dev(v_cache, "attention_prep v_cache");
  const int64_t D = q_out.size(-1), T = qkv.size(0);
  SPARROW_REQUIRE(qkv.rank() == 2 && qkv.size(1) == (heads + 2 * kv_heads) * D && q_out.numel() == T * heads * D &&
                      k_cache.size(-1) == D && k_cache.numel() / k_cache.size(0) == kv_heads * D &&
                      v_cache.shape() == k_cache.shape() && D % 2 == 0 && q_out.dtype() == qkv.dtype(),
                  "attention_prep: qkv {} for {} + 2 x {} heads of {}, q_out {}, caches {}", qkv.shape().str(), heads,
                  kv_heads, D, q_out.shape().str(), k_cache.shape().str());
  SPARROW_REQUIRE(size_t((heads + 2 * kv_heads) * D) * 4 <= 200 * 1024, "attention_prep: row of {} floats too long",
                  (heads + 2 * kv_heads) * D);
  const int mode = norm == HeadNorm::kNone ? 0 : norm == HeadNorm::kPerHead ? 1 : 2;
  if (mode) {
    SPARROW_REQUIRE(q_norm && k_norm && q_norm->dtype() == DType::kF32 && k_norm->dtype() == DType::kF32 &&
                        q_norm->numel() == (mode == 1 ? D : heads * D) && k_norm->numel() == (mode == 1 ? D : kv_heads * D),
                    "attention_prep: q/k norm weights must be f32 of the norm's size");
  }
  kn::attention_prep({qkv.data(), qkv.dtype(), qkv.size(1), T, heads, kv_heads, D, mode,
                      mode ? q_norm->data_as<float>() : nullptr, mode ? k_norm->data_as<float>() : nullptr, eps, positions,
                      inv_freq, cache_loc, q_out.data(), k_cache.data(), v_cache.data(), k_cache.dtype()},
                     current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("attention_prep");
}

void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& y) {
  check_dev(gate, "silu_mul gate");
  check_dev(up, "silu_mul up");
  check_dev(y, "silu_mul y");
  SPARROW_REQUIRE(gate.numel() == y.numel() && up.numel() == y.numel(), "silu_mul shapes");
  const int64_t inter = y.size(-1);
  kn::silu_mul({gate.data(), gate.dtype(), up.data(), up.dtype(), y.data(), y.dtype(), inter ? y.numel() / inter : 0, inter},
              current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("silu_mul");
}

void route_topk_softmax(const Tensor& logits, int k, bool renormalize, int32_t* ids, float* weights) {
  check_dev(logits, "router logits");
  const int64_t e = logits.size(1);
  SPARROW_REQUIRE(k >= 1 && k <= e, "top-k {} of {} experts", k, e);
  SPARROW_REQUIRE(e <= kn::kRouterMaxExperts, "router: {} experts > {}", e, kn::kRouterMaxExperts);
  kn::route_topk_softmax({logits.data(), logits.dtype(), ids, weights, logits.size(0), e, k, renormalize},
                        current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("route_topk_softmax");
}

void log_softmax(const Tensor& logits, const Tensor& out) {
  check_dev(logits, "log_softmax in");
  check_dev(out, "log_softmax out");
  SPARROW_REQUIRE(out.dtype() == DType::kF32 && out.numel() == logits.numel(),
                  "log_softmax out must be f32 of the same shape");
  kn::log_softmax({logits.data(), logits.dtype(), out.data_as<float>(), logits.size(0), logits.size(1)},
                 current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("log_softmax");
}

void argmax_rows(const Tensor& logits, int32_t* out) {
  check_dev(logits, "argmax_rows");
  SPARROW_REQUIRE(logits.dtype() == DType::kF32 && logits.rank() == 2, "argmax_rows: f32 [R, V] logits expected");
  kn::argmax_rows({logits.data_as<float>(), logits.size(0), logits.size(1), out}, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("argmax_rows");
}

namespace {

std::atomic<bool>& sampling_shortlist() {
  static std::atomic<bool> on{kn::ab_switch_on("SPARROW_SAMPLING_SHORTLIST")};
  return on;
}

}  // namespace

void set_sampling_shortlist(bool on) { sampling_shortlist().store(on); }

void sample_rows(const Tensor& logits, const RowSampling* params, int32_t* out, int* shortlist_rows) {
  check_dev(logits, "sample_rows");
  SPARROW_REQUIRE(logits.dtype() == DType::kF32 && logits.rank() == 2, "sample_rows: f32 [R, V] logits expected");
  SPARROW_REQUIRE(logits.size(1) < (int64_t(1) << 31), "sample_rows: vocabulary of {} exceeds int32 ids", logits.size(1));
  int bits = 0;  // ceil(log2 V)
  while ((int64_t(1) << bits) < logits.size(1)) ++bits;
  const double mass_scale = std::ldexp(1.0, std::min(46, 63 - bits));
  kn::sample_rows({logits.data_as<float>(), logits.size(0), logits.size(1), params, out, mass_scale,
                   sampling_shortlist().load(), shortlist_rows},
                  current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("sample_rows");
}

void row_logprobs(const Tensor& logits, const int32_t* chosen, const RowLogprobs* params, RowLogprobsOut* out,
                  int* shortlist_rows) {
  check_dev(logits, "row_logprobs");
  SPARROW_REQUIRE(logits.dtype() == DType::kF32 && logits.rank() == 2, "row_logprobs: f32 [R, V] logits expected");
  SPARROW_REQUIRE(logits.size(1) < (int64_t(1) << 31), "row_logprobs: vocabulary of {} exceeds int32 ids", logits.size(1));
  kn::row_logprobs({logits.data_as<float>(), logits.size(0), logits.size(1), chosen, params, out,
                    sampling_shortlist().load(), shortlist_rows},
                   current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("row_logprobs");
}

void apply_logit_edits(const Tensor& logits, const LogitEdit* edits, int64_t n, float* saved) {
  check_dev(logits, "apply_logit_edits");
  SPARROW_REQUIRE(logits.dtype() == DType::kF32 && logits.rank() == 2, "apply_logit_edits: f32 [R, V] logits expected");
  kn::apply_logit_edits({logits.data_as<float>(), logits.size(1), edits, n, saved}, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("apply_logit_edits");
}

void restore_logits(const Tensor& logits, const LogitEdit* edits, int64_t n, const float* saved) {
  check_dev(logits, "restore_logits");
  SPARROW_REQUIRE(logits.dtype() == DType::kF32 && logits.rank() == 2, "restore_logits: f32 [R, V] logits expected");
  kn::restore_logits({logits.data_as<float>(), logits.size(1), edits, n, const_cast<float*>(saved)}, current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("restore_logits");
}

size_t moe_workspace_bytes(int64_t T, int k, int64_t E, int64_t H, int64_t I) {
  const int64_t P = T * k;
  const auto r = [](int64_t b) { return size_t((b + 255) / 256 * 256); };
  return r((E + 1) * 4) + r(P * 4) + r(int64_t(kn::moe_max_tiles(P, int32_t(E), kn::kGemmBM)) * 12) + r(4) +
         r(P * I * 2) + r(T * E * 4) + r(P * 4) + r(P * 4) + r(P * H * 4);
}

namespace {

std::atomic<int>& moe_gemm_choice() {
  static std::atomic<int> choice{[] {
    const char* e = std::getenv("SPARROW_MOE_GEMM");
    if (e && std::strcmp(e, "mma") == 0) return int(MoeGemm::kMma);
    if (e && std::strcmp(e, "wgmma") == 0) return int(MoeGemm::kWgmma);
    return int(MoeGemm::kAuto);
  }()};
  return choice;
}

}  // namespace

void set_moe_gemm(MoeGemm choice) { moe_gemm_choice().store(int(choice)); }

bool moe_gemm_uses_wgmma(int64_t pairs) {
  switch (MoeGemm(moe_gemm_choice().load())) {
    case MoeGemm::kMma: return false;
    case MoeGemm::kWgmma: return true;
    default: return pairs >= kMoeWgmmaMinPairs && !::sparrow::cuda::deterministic();
  }
}

DType moe_slot_dtype(int64_t pairs) { return moe_gemm_uses_wgmma(pairs) ? DType::kBF16 : DType::kF32; }

namespace {

// The first half of the grouped expert pipeline, shared by moe_experts and
// moe_expert_values: the P = T * k pairs of `ids` grouped by local expert (experts
// [expert0, expert0 + E) of w13 / w2; other pairs left out) and act = silu(gate) * up for
// every grouped row. Returns the down GEMM's parameters over all of I (act, the tiles, the
// pair of each row); the caller sets its output (c, route_w) and launches it. Scratch from
// ws (the caller rewinds). `wgmma`: the gate_up GEMM on gemm_wgmma.cu (default mode only).
kn::GemmParams group_and_gate_up(const Tensor& x, const int32_t* ids, int k, const Tensor& w13, const Tensor& w2,
                                 int64_t expert0, bool wgmma, Arena& ws, cudaStream_t s) {
  const int64_t P = x.size(0) * k, H = x.size(1), E = w13.size(0), I = w13.size(1) / 2;
  auto* expert_start = ws.alloc_array<int32_t>(size_t(E + 1));
  auto* pair_of_row = ws.alloc_array<int32_t>(size_t(P));
  const int32_t bm = wgmma ? kn::kGemmWgmmaBM : kn::kGemmBM;  // at least kGemmBM: the workspace bound holds
  const int32_t max_tiles = kn::moe_max_tiles(P, int32_t(E), bm);
  auto* tiles = ws.alloc_array<int32_t>(size_t(max_tiles) * 3);
  auto* num_tiles = ws.alloc_array<int32_t>(1);
  auto* act = ws.alloc_array<uint16_t>(size_t(P * I));
  kn::moe_group({ids, P, int32_t(E), bm, expert_start, pair_of_row, tiles, num_tiles, int32_t(expert0)}, s);
  SPARROW_CUDA_CHECK_LAUNCH("moe_group");

  kn::GemmParams g{};
  g.mode = kn::GemmMode::kMoeGateUp;
  g.a = x.data_as<uint16_t>();
  g.lda = H;
  g.a_gather = pair_of_row;
  g.a_gather_div = k;
  g.b = w13.data_as<uint16_t>();
  g.ldb = H;
  g.b_expert_stride = 2 * I * H;
  g.M = P;
  g.N = 2 * I;
  g.K = H;
  g.c = act;
  g.c_t = DType::kBF16;
  g.ldc = I;
  g.tiles = tiles;
  g.num_tiles = num_tiles;
  g.max_tiles = max_tiles;
  if (wgmma) kn::gemm_bf16_wgmma(g, s);
  else kn::gemm_bf16(g, s);
  SPARROW_CUDA_CHECK_LAUNCH("moe gate_up GEMM");

  kn::GemmParams d = g;
  d.mode = kn::GemmMode::kMoeDown;
  d.a = act;
  d.lda = I;
  d.a_gather = nullptr;
  d.b = w2.data_as<uint16_t>();
  d.ldb = I;
  d.b_expert_stride = H * I;
  d.N = H;
  d.K = I;
  d.c = nullptr;
  d.c_t = DType::kF32;
  d.ldc = H;
  d.pair_of_row = pair_of_row;
  return d;
}

}  // namespace

void moe_experts(const Tensor& x, const int32_t* ids, const float* weights, int k, const Tensor& w13,
                 const Tensor& w2, Arena& ws, const Tensor& slot_out, int64_t expert0, int64_t router_experts) {
  check_dev(x, "moe x");
  check_dev(w13, "moe w13");
  check_dev(w2, "moe w2");
  check_dev(slot_out, "moe slot_out");
  SPARROW_REQUIRE(x.dtype() == DType::kBF16 && w13.dtype() == DType::kBF16 && w2.dtype() == DType::kBF16,
                  "moe: x and expert weights must be bf16");
  SPARROW_REQUIRE(w13.rank() == 3 && w2.rank() == 3, "moe: w13 [E, 2I, H], w2 [E, H, I]");
  const int64_t T = x.size(0), H = x.size(1), E = w13.size(0), I = w13.size(1) / 2;
  SPARROW_REQUIRE(w13.size(1) == 2 * I && w13.size(2) == H && w2.size(0) == E && w2.size(1) == H &&
                      w2.size(2) == I,
                  "moe: w13 {} / w2 {} do not match H {}", w13.shape().str(), w2.shape().str(), H);
  SPARROW_REQUIRE(H % 8 == 0 && I % 8 == 0, "moe: H and I must be multiples of 8");
  const bool wgmma = moe_gemm_uses_wgmma(T * k);
  SPARROW_REQUIRE((slot_out.dtype() == DType::kF32 || (slot_out.dtype() == DType::kBF16 && wgmma)) &&
                      slot_out.size(0) == T * k && slot_out.size(1) == H,
                  "moe: slot_out must be f32 [T*k, H] (or bf16 where the wgmma GEMMs run: moe_slot_dtype)");
  if (T == 0) return;
  const size_t mark = ws.used();
  const cudaStream_t s = current_stream();
  SPARROW_REQUIRE(expert0 >= 0 && (router_experts == 0 || expert0 + E <= router_experts),
                  "moe: experts [{}, {}) of a router over {}", expert0, expert0 + E, router_experts);
  // Pairs of other ranks' experts are in no group: the GEMMs never write their rows.
  if (expert0 != 0 || (router_experts != 0 && router_experts != E))
    SPARROW_CUDA_CHECK(cudaMemsetAsync(slot_out.data(), 0, slot_out.nbytes(), s));
  kn::GemmParams d = group_and_gate_up(x, ids, k, w13, w2, expert0, wgmma, ws, s);
  d.c = slot_out.data();
  d.c_t = slot_out.dtype();
  d.route_w = weights;
  if (wgmma) kn::gemm_bf16_wgmma(d, s);
  else kn::gemm_bf16(d, s);
  SPARROW_CUDA_CHECK_LAUNCH("moe down GEMM");
  ws.rewind(mark);  // stream-ordered: later users of this scratch run after these kernels
}

void moe_combine(const Tensor& slot_out, int k, const Tensor* shared_out, const Tensor* shared_logit,
                 const Tensor& out) {
  moe_combine_weighted(slot_out, nullptr, k, shared_out, shared_logit, out);
}

void moe_combine_weighted(const Tensor& slot_out, const float* weights, int k, const Tensor* shared_out,
                          const Tensor* shared_logit, const Tensor& out) {
  check_dev(slot_out, "moe_combine slot_out");
  check_dev(out, "moe_combine out");
  const int64_t T = out.size(0), H = out.size(1);
  SPARROW_REQUIRE((slot_out.dtype() == DType::kF32 || slot_out.dtype() == DType::kBF16) && slot_out.size(0) == T * k &&
                      slot_out.size(1) == H,
                  "moe_combine: slot_out must be f32 or bf16 [T*k, H]");
  SPARROW_REQUIRE(!shared_out == !shared_logit, "moe_combine: shared_out and shared_logit go together");
  if (shared_out)
    SPARROW_REQUIRE(shared_out->dtype() == DType::kF32 && shared_logit->dtype() == DType::kF32 &&
                        shared_out->numel() == T * H && shared_logit->numel() == T,
                    "moe_combine: shared_out f32 [T, H], shared_logit f32 [T]");
  kn::moe_combine({slot_out.data(), slot_out.dtype(), shared_out ? shared_out->data_as<float>() : nullptr,
                  shared_logit ? shared_logit->data_as<float>() : nullptr, out.data(), out.dtype(), T, H, k, weights},
                 current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("moe_combine");
}

size_t linear_leaves_workspace_bytes(int64_t N, int leaves) {
  return leaves > 1 ? size_t(leaves) * size_t(kLeafChunkRows * N) * 4 + 256 : 0;
}

void linear_leaves(const Tensor& x_in, const Tensor& w, int leaves, const Tensor& y, Arena* ws) {
  // x and w may be column slices (a rank's share of K): strided rows are fine.
  SPARROW_REQUIRE(x_in.device() == Device::kCUDA && w.device() == Device::kCUDA && y.device() == Device::kCUDA,
                  "linear_leaves: all tensors must be on the GPU");
  const Tensor x = as_matrix(x_in, "x");
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  SPARROW_REQUIRE(w.rank() == 2 && w.size(1) == K && leaves >= 1 && leaves <= 64 && K % leaves == 0,
                  "linear_leaves: x {} / w {} in {} leaves", x_in.shape().str(), w.shape().str(), leaves);
  SPARROW_REQUIRE(y.dtype() == DType::kF32 && y.is_contiguous() && y.numel() == T * N,
                  "linear_leaves: y must be contiguous f32 [{}, {}]", T, N);
  if (leaves == 1) return linear_with(GemmBackend::kFixed, x, w, nullptr, y);
  if (T == 0 || N == 0) return;
  SPARROW_REQUIRE(ws != nullptr, "linear_leaves on the GPU takes its scratch from a workspace");
  const int64_t kb = K / leaves;
  // Rows in chunks (a row's bits do not depend on the others): bounded scratch.
  for (int64_t r0 = 0; r0 < T; r0 += kLeafChunkRows) {
    const int64_t rn = std::min(kLeafChunkRows, T - r0);
    const Tensor xr = x.slice_rows(r0, r0 + rn);
    const size_t mark = ws->used();
    const Tensor parts = ws->alloc(DType::kF32, {leaves, rn, N});
    const int64_t ldx = xr.stride(0), ldw = w.stride(0);
    if (w.dtype() == DType::kBF16 && kb % 8 == 0 && ldx % 8 == 0 && ldw % 8 == 0 && aligned16(xr.data()) &&
        aligned16(w.data())) {
      // One launch, a leaf per grid z: each is the fixed-config GEMM over its K block.
      kn::GemmParams p{};
      p.mode = kn::GemmMode::kDense;
      p.a = xr.data_as<uint16_t>();
      p.lda = ldx;
      p.b = w.data_as<uint16_t>();
      p.ldb = ldw;
      p.M = rn;
      p.N = N;
      p.K = kb;
      p.c = parts.data();
      p.c_t = DType::kF32;
      p.ldc = N;
      p.bias_t = DType::kF32;
      p.leaves = leaves;
      p.leaf_c_stride = rn * N;
      kn::gemm_bf16(p, current_stream());
      SPARROW_CUDA_CHECK_LAUNCH("gemm_bf16 dense leaves");
    } else {
      for (int b = 0; b < leaves; ++b)
        linear_with(GemmBackend::kFixed, xr.slice_cols(b * kb, (b + 1) * kb), w.slice_cols(b * kb, (b + 1) * kb), nullptr,
                    parts.slice_rows(b, b + 1).view({rn, N}));
    }
    kn::rank_tree_sum(parts.data_as<float>(), size_t(rn * N), leaves, y.data_as<float>() + r0 * N, size_t(rn * N),
                      current_stream());
    SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum (leaves)");
    ws->rewind(mark);  // stream-ordered
  }
}

namespace {
// Tokens per pass of moe_expert_values: bounds its [leaves, T*k, H] scratch.
constexpr int64_t kValueChunkTokens = 256;
}  // namespace

size_t moe_expert_values_workspace_bytes(int k, int64_t E, int64_t H, int64_t I, int leaves) {
  const int64_t P = kValueChunkTokens * k;
  return moe_workspace_bytes(kValueChunkTokens, k, E, H, I) + size_t(leaves) * size_t(P * H) * 4 + 1024;
}

void moe_expert_values(const Tensor& x, const int32_t* ids, int k, const Tensor& w13, const Tensor& w2, int leaves,
                       int64_t expert0, int64_t router_experts, Arena& ws, const Tensor& values) {
  check_dev(x, "moe values x");
  check_dev(w13, "moe values w13");
  check_dev(w2, "moe values w2");
  check_dev(values, "moe values out");
  SPARROW_REQUIRE(x.dtype() == DType::kBF16 && w13.dtype() == DType::kBF16 && w2.dtype() == DType::kBF16,
                  "moe values: x and expert weights must be bf16");
  const int64_t T = x.size(0), H = x.size(1), E = w13.size(0), I = w13.size(1) / 2;
  SPARROW_REQUIRE(w13.rank() == 3 && w2.rank() == 3 && w13.size(1) == 2 * I && w13.size(2) == H && w2.size(0) == E &&
                      w2.size(1) == H && w2.size(2) == I && H % 8 == 0 && I % 8 == 0,
                  "moe values: w13 {} / w2 {} do not match H {}", w13.shape().str(), w2.shape().str(), H);
  SPARROW_REQUIRE(leaves >= 1 && I % leaves == 0 && (I / leaves) % 8 == 0, "moe values: I {} in {} leaves of a multiple of 8",
                  I, leaves);
  SPARROW_REQUIRE(expert0 >= 0 && expert0 + E <= router_experts, "moe values: experts [{}, {}) of a router over {}",
                  expert0, expert0 + E, router_experts);
  SPARROW_REQUIRE(values.dtype() == DType::kF32 && values.is_contiguous() && values.numel() == T * k * H,
                  "moe values: values must be contiguous f32 [T*k, H]");
  const cudaStream_t s = current_stream();
  const int64_t ib = I / leaves;
  for (int64_t t0 = 0; t0 < T; t0 += kValueChunkTokens) {
    const int64_t tn = std::min(kValueChunkTokens, T - t0), P = tn * k;
    const size_t mark = ws.used();
    float* parts = ws.alloc_array<float>(size_t(leaves) * size_t(P * H));
    // Pairs of other ranks' experts are in no group: their rows keep -0.0 in every leaf.
    kn::fill_f32(parts, size_t(leaves) * size_t(P * H), -0.0f, s);
    // Each leaf (grid z): the down projection over its block of I, into its own parts block.
    kn::GemmParams d = group_and_gate_up(x.slice_rows(t0, t0 + tn), ids + t0 * k, k, w13, w2, expert0, false, ws, s);
    d.K = ib;
    d.c = parts;
    d.route_w = nullptr;  // unweighted: the weights come in the combine, after the reduction
    d.leaves = leaves;
    d.leaf_c_stride = P * H;
    kn::gemm_bf16(d, s);
    SPARROW_CUDA_CHECK_LAUNCH("gemm_bf16 moe down (leaves)");
    kn::rank_tree_sum(parts, size_t(P * H), leaves, values.data_as<float>() + t0 * k * H, size_t(P * H), s);
    SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum (moe leaves)");
    ws.rewind(mark);
  }
}

void tree_sum_blocks(const Tensor& src, int blocks, const Tensor& dst) {
  check_dev(src, "tree_sum_blocks src");
  check_dev(dst, "tree_sum_blocks dst");
  kn::rank_tree_sum(src.data_as<float>(), size_t(dst.numel()), blocks, dst.data_as<float>(), size_t(dst.numel()),
                    current_stream());
  SPARROW_CUDA_CHECK_LAUNCH("rank_tree_sum (blocks)");
}

bool moe_skinny_eligible(const Tensor& x, int64_t E, int k) {
  const int64_t T = x.size(0);
  return !::sparrow::cuda::deterministic() && T <= kn::kMoeSkinnyMaxTokens && T * k <= kn::kMoeSkinnyMaxPairs &&
         E <= kn::kRouterMaxExperts;
}

void fused_moe(const Tensor& x, const Tensor& logits, int k, bool renormalize, const Tensor& w13, const Tensor& w2,
               const Tensor* shared_out, const Tensor* shared_logit, Arena& ws, const Tensor& out, int64_t expert0) {
  check_dev(x, "fused_moe x");
  check_dev(logits, "fused_moe logits");
  check_dev(out, "fused_moe out");
  const int64_t T = x.size(0), H = x.size(1), E = logits.size(1);
  SPARROW_REQUIRE(logits.rank() == 2 && logits.size(0) == T && w13.rank() == 3 && expert0 >= 0 &&
                      expert0 + w13.size(0) <= E,
                  "fused_moe: logits [T, E] {} for x {} and w13 {} from expert {}", logits.shape().str(), x.shape().str(),
                  w13.shape().str(), expert0);
  const bool all_experts = w13.size(0) == E;
  SPARROW_REQUIRE(out.rank() == 2 && out.size(0) == T && out.size(1) == H, "fused_moe: out {} for x {}",
                  out.shape().str(), x.shape().str());
  SPARROW_REQUIRE(!shared_out == !shared_logit, "fused_moe: shared_out and shared_logit go together");
  if (T == 0) return;
  const size_t mark = ws.used();
  auto* ids = ws.alloc_array<int32_t>(size_t(T * k));
  auto* weights = ws.alloc_array<float>(size_t(T * k));
  // The skinny kernels stream every routed expert's weights: the local experts only
  // (expert parallelism) go through the grouped path, which leaves the others out.
  if (all_experts && moe_skinny_eligible(x, E, k) && x.dtype() == DType::kBF16 && w13.dtype() == DType::kBF16 &&
      w2.dtype() == DType::kBF16) {
    const int64_t I = w13.size(1) / 2;
    SPARROW_REQUIRE(w13.size(1) == 2 * I && w13.size(2) == H && w2.rank() == 3 && w2.size(0) == E &&
                        w2.size(1) == H && w2.size(2) == I && H % 8 == 0 && I % 8 == 0,
                    "fused_moe: w13 {} / w2 {} do not match H {}", w13.shape().str(), w2.shape().str(), H);
    if (shared_out)
      SPARROW_REQUIRE(shared_out->dtype() == DType::kF32 && shared_logit->dtype() == DType::kF32 &&
                          shared_out->numel() == T * H && shared_logit->numel() == T,
                      "fused_moe: shared_out f32 [T, H], shared_logit f32 [T]");
    auto* act = ws.alloc_array<uint16_t>(size_t(T * k * I));
    kn::moe_skinny({x.data_as<uint16_t>(), logits.data(), logits.dtype(), T, E, H, I, k, renormalize,
                    w13.data_as<uint16_t>(), w2.data_as<uint16_t>(), ids, weights, act,
                    shared_out ? shared_out->data_as<float>() : nullptr,
                    shared_logit ? shared_logit->data_as<float>() : nullptr, out.data(), out.dtype()},
                   current_stream());
    SPARROW_CUDA_CHECK_LAUNCH("moe_skinny");
  } else {
    const Tensor slot_out = ws.alloc(moe_slot_dtype(T * k), {T * k, H});
    route_topk_softmax(logits, k, renormalize, ids, weights);
    moe_experts(x, ids, weights, k, w13, w2, ws, slot_out, expert0, E);
    moe_combine(slot_out, k, shared_out, shared_logit, out);
  }
  ws.rewind(mark);
}

void moe_forward(const Tensor& x, const Tensor& router_w, const Tensor& w13, const Tensor& w2, int k, bool renormalize,
                 Arena& ws, const Tensor& out) {
  const int64_t T = x.size(0), E = router_w.size(0);
  const size_t mark = ws.used();
  const Tensor logits = ws.alloc(DType::kF32, {T, E});
  linear(x, router_w, nullptr, logits);
  fused_moe(x, logits, k, renormalize, w13, w2, nullptr, nullptr, ws, out);
  ws.rewind(mark);
}

}  // namespace sparrow::ops::cuda
