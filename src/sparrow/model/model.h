// CausalLM: a decoder-only model built from a ModelConfig and a WeightSource. The model
// owns no KV memory and no scheduler state: one forward() turns a ForwardBatch into logits
// rows, reading and writing K/V through the pool it is given.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sparrow/model/arch/arch_spec.h"
#include "sparrow/model/config.h"
#include "sparrow/model/layers/attention.h"
#include "sparrow/model/layers/mlp.h"
#include "sparrow/model/layers/moe.h"
#include "sparrow/model/weight_store.h"
#include "sparrow/parallel/layer_communicator.h"
#include "sparrow/parallel/rank_context.h"

namespace sparrow {

class CausalLM {
 public:
  // Builds one rank's shard of the model; weights come from `source` (which must outlive the
  // model) and `rank` (its communicators too). `placement`: host (default) or a device
  // region for the weights, or a dry run that only measures that region's bytes.
  CausalLM(const ModelConfig& config, const WeightSource& source, DType dtype, const RankContext& rank,
           WeightPlacement placement = {});
  // A single-rank model (owns a trivial one-rank world).
  CausalLM(const ModelConfig& config, const WeightSource& source, DType dtype);
  ~CausalLM();

  const ModelConfig& config() const { return config_; }
  // Weights and KV cache are stored in dtype(); activations are computed in act_dtype().
  // On CPU that is always fp32: decode is bound by reading weights, so fp32 activations cost
  // nothing there and keep bf16 models within a few hundredths of a nat of the fp32
  // reference (docs/numerics.md). On a GPU activations are in dtype() (the tensor cores'
  // input type); the residual stream is fp32 on both.
  DType dtype() const { return dtype_; }
  DType act_dtype() const { return act_dtype_; }

  // Runs `batch`; writes fp32 logits [batch.logit_rows.size(), V] into `logits`. Uses `ws`
  // for all scratch (rewound before returning). Every rank of the world must call forward
  // for every step, a rank with no tokens with an empty (idle) batch.
  void forward(const ForwardBatch& batch, KVPool& kv, const ReqToTokenPool& req_to_token,
               Arena& ws, const Tensor& logits) const;
  // The same with the batch's arrays given where the model's device reads them (a GPU
  // model: uploaded; kv and ws on the device). `logits` is host memory (a GPU model then
  // computes the lm_head in chunks of kLogitChunkRows rows and copies each back) or, for a
  // GPU model, device memory (one GEMM, nothing waits: what CUDA graph capture needs), or
  // an empty Tensor (no lm_head: a rank whose attention-TP peer returns the logits).
  void forward(const ForwardBatch& batch, const BatchArrays& arrays, KVPool& kv, Arena& ws, const Tensor& logits) const;
  // A GPU model's logits handed over on the device, kLogitChunkRows rows at a time, instead
  // of a copy to the host: sink(r0, chunk) gets rows [r0, r0 + chunk.size(0)) of the step's
  // logit rows as f32 [n, V] workspace memory, valid during the call (e.g. sampling them
  // on the device and copying back a few values per row).
  using LogitSink = std::function<void(int64_t r0, const Tensor& chunk)>;
  void forward(const ForwardBatch& batch, const BatchArrays& arrays, KVPool& kv, Arena& ws, const LogitSink& sink) const;
  static constexpr int64_t kLogitChunkRows = 256;
  Device device() const { return device_; }

  // Workspace bytes a step of up to `max_tokens` tokens (of the whole world: MoE layers see
  // every DP group's tokens) needs, with req_to_token rows of `max_context` positions (0: the
  // model's max_position_embeddings).
  size_t workspace_bytes(int64_t max_tokens, int64_t max_context = 0) const;
  // KV heads this rank stores per layer.
  int64_t local_kv_heads() const;
  const RankContext& rank() const { return rank_; }

 private:
  struct Layer {
    Tensor input_norm, post_attention_norm;  // f32 [H]
    std::unique_ptr<Attention> attention;
    std::unique_ptr<SparseMoe> moe;          // exactly one of moe / mlp
    std::unique_ptr<Mlp> mlp;
  };

  void build(const WeightSource& source, WeightPlacement placement);
  void embed(const ForwardBatch& batch, const int32_t* ids, const Tensor& residual) const;
  void forward(const ForwardBatch& batch, const BatchArrays& arrays, KVPool& kv, Arena& ws, const Tensor& logits,
               const LogitSink* sink) const;
  // logits[r] = lm_head(normed[logit_rows[r]]) (host logits, or device chunks to `sink`;
  // see forward).
  void lm_head(const Tensor& normed, const int32_t* logit_rows, int64_t rows, Arena& ws, const Tensor& logits,
               const LogitSink* sink) const;

  ModelConfig config_;
  DType dtype_;
  DType act_dtype_ = DType::kF32;
  Device device_ = Device::kCPU;
  std::unique_ptr<InProcessWorld> own_world_;  // single-rank models only
  std::unique_ptr<RankComms> own_comms_;
  RankContext rank_;
  std::unique_ptr<LayerCommunicator> comm_;
  std::unique_ptr<WeightStore> weights_;
  Tensor embed_, lm_head_, final_norm_;  // embed_/lm_head_: this rank's vocabulary rows
  int64_t vocab0_ = 0;
  bool whole_vocab_ = true;  // embed_ / lm_head_ hold every vocabulary row
  int dense_leaves_ = 1;
  std::vector<Layer> layers_;
};

// Opens a model directory (config.json + safetensors) or, with load_format "dummy", makes
// seeded random weights at the config's shapes.
struct LoadedModel {
  std::string path;
  std::string load_format;
  DType dtype = DType::kBF16;
  uint64_t seed = 0;
  ModelConfig config;
  std::unique_ptr<WeightSource> source;
  std::unique_ptr<CausalLM> model;
};
LoadedModel load_model(const std::string& model_path, const std::string& load_format, DType dtype, uint64_t seed = 0);
// The config and weight source only (no model built): what an Engine takes.
LoadedModel load_model_source(const std::string& model_path, const std::string& load_format, DType dtype, uint64_t seed = 0);

}  // namespace sparrow
