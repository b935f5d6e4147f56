#include "sparrow/model/model.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "sparrow/core/log.h"
#include "sparrow/core/progress.h"
#include "sparrow/kernels/ops.h"

namespace sparrow {

CausalLM::CausalLM(const ModelConfig& c, const WeightSource& source, DType dtype, const RankContext& rank,
                   WeightPlacement placement)
    : config_(c), dtype_(dtype), rank_(rank) {
  build(source, placement);
}

CausalLM::CausalLM(const ModelConfig& c, const WeightSource& source, DType dtype) : config_(c), dtype_(dtype) {
  own_world_ = std::make_unique<InProcessWorld>(1);
  own_comms_ = std::make_unique<RankComms>(RankComms::create(*own_world_, Mesh{}, 0));
  rank_ = own_comms_->context(Mesh{}, 0, false, 1, MoeA2ABackend::kNone);
  build(source, {});
}

CausalLM::~CausalLM() = default;

void CausalLM::build(const WeightSource& source, WeightPlacement placement) {
  const ModelConfig& c = config_;
  device_ = placement.device();
  if (device_ != Device::kCPU) {
    SPARROW_REQUIRE(dtype_ == DType::kBF16 || dtype_ == DType::kF32, "the GPU backend runs bfloat16 or float32 models, not {}",
                    dtype_name(dtype_));
    act_dtype_ = dtype_;
  }
  comm_ = std::make_unique<LayerCommunicator>(rank_);
  weights_ = std::make_unique<WeightStore>(source, dtype_, placement);
  const ArchSpec arch = arch_for(c.model_type);
  WeightStore& w = *weights_;
  const int64_t h = c.hidden_size;
  const int tp = rank_.mesh.attn_tp, r = rank_.attn_tp_rank();
  // Vocabulary-parallel embedding and lm_head over attention TP on CPU ranks. A GPU rank
  // holds both whole: a lookup needs no all-reduce, every rank's logits are the TP1 logits
  // (no gather), and the two matrices cost ~2 x V x H x 2 bytes per GPU (1.2 GiB for
  // Qwen3-30B-A3B), small next to the experts.
  const Range vocab = device_ != Device::kCPU ? Range{0, c.vocab_size} : padded_shard_range(c.vocab_size, tp, r);
  whole_vocab_ = vocab.begin == 0 && vocab.end == c.vocab_size;
  vocab0_ = vocab.begin;
  embed_ = w.matrix("model.embed_tokens.weight", {c.vocab_size, h}, vocab);
  // Tied checkpoints usually omit lm_head.weight; if one carries it anyway, it is the same data.
  lm_head_ = c.tie_word_embeddings ? embed_ : w.matrix("lm_head.weight", {c.vocab_size, h}, vocab);
  final_norm_ = w.vector_f32("model.norm.weight", h);
  const int dense_tp = rank_.mesh.dense_tp;
  dense_leaves_ = local_leaves(rank_, dense_tp);
  layers_.resize(size_t(c.num_layers));
  // One bar per process: rank 0 reports (the other ranks load their shards alongside); the
  // tiny test models load too fast to need one.
  ProgressBar progress("loading weights", c.num_layers,
                       rank_.rank == 0 && !placement.dry_run && c.hidden_size >= 256 && log_level() <= LogLevel::kInfo);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    Layer& L = layers_[size_t(i)];
    L.input_norm = w.vector_f32(p + ".input_layernorm.weight", h);
    L.post_attention_norm = w.vector_f32(p + ".post_attention_layernorm.weight", h);
    L.attention = std::make_unique<Attention>(c, i, w, p + ".self_attn", rank_);
    if (c.is_moe_layer(i))
      L.moe = std::make_unique<SparseMoe>(c, w, p + "." + arch.moe_block, arch.moe, rank_);
    else
      L.mlp = std::make_unique<Mlp>(w, p + ".mlp", h, c.intermediate_size, Mlp::Names{},
                                    shard_range(c.intermediate_size, dense_tp, dense_tp > 1 ? r : 0));
    progress.advance();
  }
}

int64_t CausalLM::local_kv_heads() const { return layers_[0].attention->local_kv_heads(); }

size_t CausalLM::workspace_bytes(int64_t max_tokens, int64_t max_context) const {
  const ModelConfig& c = config_;
  const size_t s = dtype_size(act_dtype_), h = size_t(c.hidden_size), k = size_t(std::max<int64_t>(c.top_k, 1));
  const size_t qkv = size_t((2 * c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
  const size_t attn = qkv * s + h * s;
  const size_t moe = size_t(c.num_experts) * 4 + k * 8 + k * h * (s + 8) + 2 * k * size_t(c.moe_intermediate_size) * s +
                     h * 4 + size_t(2 * c.shared_expert_intermediate_size) * s + h * 4 + 4;
  const size_t mlp = size_t(2 * c.intermediate_size) * s;
  const size_t per_token = 4 * h * s + std::max(attn, std::max(moe, mlp));
  // Alignment slack per allocation (each expert allocates a few blocks) plus fixed slack.
  size_t bytes = size_t(max_tokens + 1) * per_token * 5 / 4 + size_t(c.num_experts + 64) * 4 * 64 + (1u << 20);
  if (device_ != Device::kCPU) {
    // The fused MoE's grouping scratch and activations, and the lm_head chunk (rows + logits).
    bytes += ops::moe_experts_workspace_bytes(device_, max_tokens, int(k), c.num_experts, c.hidden_size,
                                              c.moe_intermediate_size);
    if (rank_.deterministic)  // the leaf trees' scratch (chunked: independent of max_tokens)
      bytes += ops::moe_expert_values_workspace_bytes(int(k), c.num_experts, c.hidden_size, c.moe_intermediate_size,
                                                      rank_.leaves) +
               ops::linear_leaves_workspace_bytes(device_, c.hidden_size, rank_.leaves) + (1u << 16);
    bytes += size_t(kLogitChunkRows) * (h * s + size_t(c.vocab_size) * 4) + (1u << 16);
    // Decode-split attention partials (steps of one token per sequence).
    const int64_t ctx = max_context > 0 ? max_context : std::max<int64_t>(c.max_position_embeddings, 1);
    const int64_t heads = c.num_heads / rank_.mesh.attn_tp;
    // Every decode-sized step: the default mode's split count falls with the batch in
    // whole steps (ceil(2048 / batch), at most 128), so the need is not monotone in it.
    size_t most = 0;
    for (int64_t t = 1; t <= std::max<int64_t>(1, std::min<int64_t>(max_tokens, 256)); ++t)
      most = std::max(most, ops::paged_attention_scratch_floats(device_, t, heads, c.head_dim, ctx));
    bytes += most * 4 + 256;
  }
  return bytes;
}

void CausalLM::embed(const ForwardBatch& batch, const int32_t* ids, const Tensor& residual) const {
  const int64_t t = batch.num_tokens(), h = config_.hidden_size;
  if (whole_vocab_) {
    ops::embedding(embed_, ids, residual);
    return;
  }
  // This rank's vocabulary rows; -0.0 elsewhere, so the tree sum over ranks is exact.
  float* r = residual.data_as<float>();
  std::fill(r, r + t * h, -0.0f);
  const int64_t v = embed_.size(0);
  for (int64_t i = 0; i < t; ++i) {
    const int64_t id = batch.input_ids[size_t(i)];
    SPARROW_CHECK(id >= 0 && id < config_.vocab_size, "token id {} outside vocabulary [0, {})", id, config_.vocab_size);
    if (id >= vocab0_ && id < vocab0_ + v) convert(embed_.row_ptr(id - vocab0_), embed_.dtype(), r + i * h, DType::kF32, size_t(h));
  }
  comm_->all_reduce_attn_tp(r, size_t(t * h));
}

void CausalLM::forward(const ForwardBatch& batch, KVPool& kv, const ReqToTokenPool& req_to_token,
                       Arena& ws, const Tensor& logits) const {
  SPARROW_CHECK(device_ == Device::kCPU, "a GPU model takes its batch arrays uploaded");
  forward(batch, BatchArrays::host(batch, req_to_token.table(), req_to_token.max_context()), kv, ws, logits);
}

void CausalLM::forward(const ForwardBatch& batch, const BatchArrays& arrays, KVPool& kv, Arena& ws,
                       const Tensor& logits) const {
  forward(batch, arrays, kv, ws, logits, nullptr);
}

void CausalLM::forward(const ForwardBatch& batch, const BatchArrays& arrays, KVPool& kv, Arena& ws,
                       const LogitSink& sink) const {
  SPARROW_CHECK(device_ != Device::kCPU, "a logits sink is for a GPU model (a CPU model's logits are on the host)");
  forward(batch, arrays, kv, ws, Tensor(), &sink);
}

void CausalLM::forward(const ForwardBatch& batch, const BatchArrays& arrays, KVPool& kv, Arena& ws,
                       const Tensor& logits, const LogitSink* sink) const {
  const int64_t t = batch.num_tokens(), h = config_.hidden_size;
  const int64_t rows = int64_t(batch.logit_rows.size());
  // A GPU rank given no buffer (null data) leaves out the lm_head: its attention-TP peer
  // returns the group's logits. (GPU ranks hold the lm_head whole, so no collective is
  // skipped; a CPU rank's vocabulary-parallel lm_head is collective and always runs.)
  const bool want_logits = sink || logits.data() != nullptr || device_ == Device::kCPU;
  SPARROW_CHECK(sink || !want_logits ||
                    (logits.dtype() == DType::kF32 && (logits.device() == Device::kCPU || logits.device() == device_) &&
                     logits.size(0) == rows && logits.size(1) == config_.vocab_size),
                "logits buffer {} for {} rows", logits.shape().str(), rows);
  SPARROW_CHECK(ws.device() == device_, "workspace on the model's device");
  const bool single = rank_.mesh.world == 1;
  if (t == 0 && single) return;
  for (int32_t src : batch.logit_rows) SPARROW_CHECK(src >= 0 && src < t, "logit row {} of {} tokens", src, t);
  const size_t mark = ws.used();
  comm_->begin_step(t);
  StepContext ctx{batch, kv, arrays, ws, act_dtype_, *comm_};

  // The residual stream stays fp32 whatever the compute dtype: it carries the sum of every
  // layer's output, and rounding it to bf16 each layer is the largest error source.
  const Tensor residual = ws.alloc(DType::kF32, {t, h});
  const Tensor normed = ws.alloc(act_dtype_, {t, h});
  const Tensor branch = ws.alloc(DType::kF32, {t, h});  // output of attention / MLP, complete
  embed(batch, arrays.ids, residual);
  const float eps = float(config_.rms_norm_eps);
  ops::rms_norm(residual, layers_[0].input_norm, eps, normed);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    const size_t layer_mark = ws.used();
    L.attention->forward(normed, ctx, branch);
    ops::add_rms_norm(branch, residual, L.post_attention_norm, eps, normed);
    if (L.moe) {
      L.moe->forward(normed, ctx, branch);
    } else {
      L.mlp->forward(normed, ws, branch, dense_leaves_);
      // Split over attention TP: a partial sum to complete; whole (dense_tp 1): complete.
      Hidden hd{branch, Layout::kAttnTPFull, rank_.mesh.dense_tp > 1 ? PartialOver::kAttnTP : PartialOver::kNone};
      if (rank_.mesh.dense_tp > 1) comm_->reduce_attn_tp(hd);
    }
    const Tensor& next_norm = i + 1 < layers_.size() ? layers_[i + 1].input_norm : final_norm_;
    ops::add_rms_norm(branch, residual, next_norm, eps, normed);
    ws.rewind(layer_mark);
  }
  if (want_logits) lm_head(normed, arrays.logit_rows, rows, ws, logits, sink);
  ws.rewind(mark);
}

void CausalLM::lm_head(const Tensor& normed, const int32_t* logit_rows, int64_t rows, Arena& ws, const Tensor& logits,
                       const LogitSink* sink) const {
  const int64_t h = config_.hidden_size;
  if (!sink && logits.device() != Device::kCPU) {  // device logits (a graph replay): one GEMM, no copy
    const Tensor picked = ws.alloc(act_dtype_, {rows, h});
    ops::embedding(normed, logit_rows, picked);
    ops::linear(picked, lm_head_, nullptr, logits);
    return;
  }
  if (device_ != Device::kCPU) {
    // In chunks: a step that wants every token's logits (input logprobs of a long prompt)
    // would otherwise need [T, V] floats of device scratch.
    const size_t mark = ws.used();
    for (int64_t r0 = 0; r0 < rows; r0 += kLogitChunkRows) {
      const int64_t n = std::min(kLogitChunkRows, rows - r0);
      const Tensor picked = ws.alloc(act_dtype_, {n, h});
      const Tensor out = ws.alloc(DType::kF32, {n, config_.vocab_size});
      ops::embedding(normed, logit_rows + r0, picked);  // gathers rows of normed
      ops::linear(picked, lm_head_, nullptr, out);
      if (sink) (*sink)(r0, out);
      else ops::copy(logits.slice_rows(r0, r0 + n), out);
      ws.rewind(mark);
    }
    return;
  }
  const Tensor picked = ws.alloc(act_dtype_, {rows, h});
  ops::embedding(normed, logit_rows, picked);  // gathers rows of normed
  if (whole_vocab_) {
    ops::linear(picked, lm_head_, nullptr, logits);
  } else {
    const Tensor mine = ws.alloc(DType::kF32, {rows, lm_head_.size(0)});
    ops::linear(picked, lm_head_, nullptr, mine);
    comm_->all_gather_cols_attn_tp(mine, logits, ws);
  }
}

LoadedModel load_model(const std::string& model_path, const std::string& load_format, DType dtype, uint64_t seed) {
  LoadedModel m = load_model_source(model_path, load_format, dtype, seed);
  m.model = std::make_unique<CausalLM>(m.config, *m.source, dtype);
  const std::vector<std::string> unused = m.source->unused_names();
  if (!unused.empty())
    log(LogLevel::kWarn, "{} checkpoint tensors were not used by the model (first: {})", unused.size(), unused.front());
  return m;
}

LoadedModel load_model_source(const std::string& model_path, const std::string& load_format, DType dtype, uint64_t seed) {
  LoadedModel m;
  m.path = model_path;
  m.load_format = load_format;
  m.dtype = dtype;
  m.seed = seed;
  // A bare config.json is enough for dummy weights (benchmarks at real shapes).
  const bool is_file = std::filesystem::is_regular_file(model_path);
  SPARROW_REQUIRE(!is_file || load_format == "dummy", "{} is a file: a checkpoint is a directory (a bare config.json needs --load-format dummy)", model_path);
  if (is_file) {
    std::ifstream f(model_path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception& e) {
      throw_input_error("{}: not valid JSON: {}", model_path, e.what());
    }
    m.config = ModelConfig::from_json(j);
  } else {
    m.config = ModelConfig::from_dir(model_path);
  }
  if (load_format == "dummy") m.source = make_dummy_weights(seed, dtype);
  else if (load_format == "auto" || load_format == "safetensors") m.source = open_safetensors_checkpoint(model_path);
  else throw_input_error("unknown --load-format '{}' (supported: auto, safetensors, dummy)", load_format);
  return m;
}

}  // namespace sparrow
