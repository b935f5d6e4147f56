#include "sparrow/model/model.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "sparrow/core/log.h"
#include "sparrow/kernels/ops.h"

namespace sparrow {

CausalLM::CausalLM(const ModelConfig& c, const WeightSource& source, DType dtype)
    : config_(c), dtype_(dtype), weights_(std::make_unique<WeightStore>(source, dtype)) {
  const ArchSpec arch = arch_for(c.model_type);
  WeightStore& w = *weights_;
  const int64_t h = c.hidden_size;
  embed_ = w.matrix("model.embed_tokens.weight", {c.vocab_size, h});
  // Tied checkpoints usually omit lm_head.weight; if one carries it anyway, it is the same data.
  lm_head_ = c.tie_word_embeddings ? embed_ : w.matrix("lm_head.weight", {c.vocab_size, h});
  final_norm_ = w.vector_f32("model.norm.weight", h);
  layers_.resize(size_t(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    Layer& L = layers_[size_t(i)];
    L.input_norm = w.vector_f32(p + ".input_layernorm.weight", h);
    L.post_attention_norm = w.vector_f32(p + ".post_attention_layernorm.weight", h);
    L.attention = std::make_unique<Attention>(c, i, w, p + ".self_attn");
    if (c.is_moe_layer(i))
      L.moe = std::make_unique<SparseMoe>(c, w, p + "." + arch.moe_block, arch.moe);
    else
      L.mlp = std::make_unique<Mlp>(w, p + ".mlp", h, c.intermediate_size);
  }
}

size_t CausalLM::workspace_bytes(int64_t max_tokens) const {
  const ModelConfig& c = config_;
  const size_t s = dtype_size(dtype_), h = size_t(c.hidden_size), k = size_t(std::max<int64_t>(c.top_k, 1));
  const size_t qkv = size_t((2 * c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
  const size_t attn = qkv * s + h * s;
  const size_t moe = size_t(c.num_experts) * 4 + k * 8 + k * h * (s + 8) + 2 * k * size_t(c.moe_intermediate_size) * s +
                     h * 4 + size_t(2 * c.shared_expert_intermediate_size) * s + h * 4 + 4;
  const size_t mlp = size_t(2 * c.intermediate_size) * s;
  const size_t per_token = 4 * h * s + std::max(attn, std::max(moe, mlp));
  // Alignment slack per allocation (each expert allocates a few blocks) plus fixed slack.
  return size_t(max_tokens + 1) * per_token * 5 / 4 + size_t(c.num_experts + 64) * 4 * 64 + (1u << 20);
}

void CausalLM::forward(const ForwardBatch& batch, KVPool& kv, const ReqToTokenPool& req_to_token,
                       Arena& ws, const Tensor& logits) const {
  const int64_t t = batch.num_tokens(), h = config_.hidden_size;
  const int64_t rows = int64_t(batch.logit_rows.size());
  SPARROW_CHECK(logits.dtype() == DType::kF32 && logits.size(0) == rows && logits.size(1) == config_.vocab_size,
                "logits buffer {} for {} rows", logits.shape().str(), rows);
  if (t == 0) return;
  const size_t mark = ws.used();
  StepContext ctx{batch, kv, {}, ws, dtype_};
  ctx.attention.batch = batch.batch_size();
  ctx.attention.req_slots = batch.req_slots.data();
  ctx.attention.seq_lens = batch.seq_lens.data();
  ctx.attention.extend_lens = batch.extend_lens.data();
  ctx.attention.q_offsets = batch.token_offsets.data();
  ctx.attention.req_to_token = req_to_token.table();
  ctx.attention.max_context = req_to_token.max_context();

  // The residual stream stays fp32 whatever the compute dtype: it carries the sum of every
  // layer's output, and rounding it to bf16 each layer is the largest error source.
  const Tensor residual = ws.alloc(DType::kF32, {t, h});
  const Tensor normed = ws.alloc(dtype_, {t, h});
  const Tensor branch = ws.alloc(dtype_, {t, h});  // output of attention / MLP
  ops::embedding(embed_, batch.input_ids.data(), residual);
  ops::rms_norm(residual, layers_[0].input_norm, float(config_.rms_norm_eps), normed);
  const float eps = float(config_.rms_norm_eps);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& L = layers_[i];
    const size_t layer_mark = ws.used();
    L.attention->forward(normed, ctx, branch);
    ops::add_rms_norm(branch, residual, L.post_attention_norm, eps, normed);
    if (L.moe) L.moe->forward(normed, ws, branch);
    else L.mlp->forward(normed, ws, branch);
    const Tensor& next_norm = i + 1 < layers_.size() ? layers_[i + 1].input_norm : final_norm_;
    ops::add_rms_norm(branch, residual, next_norm, eps, normed);
    ws.rewind(layer_mark);
  }
  const Tensor picked = ws.alloc(dtype_, {rows, h});
  const size_t row_bytes = size_t(h) * dtype_size(dtype_);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t src = batch.logit_rows[size_t(r)];
    SPARROW_CHECK(src >= 0 && src < t, "logit row {} of {} tokens", src, t);
    std::memcpy(picked.row_ptr(r), normed.row_ptr(src), row_bytes);
  }
  ops::linear(picked, lm_head_, nullptr, logits);
  ws.rewind(mark);
}

LoadedModel load_model(const std::string& model_path, const std::string& load_format, DType dtype, uint64_t seed) {
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
  m.model = std::make_unique<CausalLM>(m.config, *m.source, dtype);
  const std::vector<std::string> unused = m.source->unused_names();
  if (!unused.empty())
    log(LogLevel::kWarn, "{} checkpoint tensors were not used by the model (first: {})", unused.size(), unused.front());
  return m;
}

}  // namespace sparrow
