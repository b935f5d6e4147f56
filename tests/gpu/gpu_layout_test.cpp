// The parallel layouts on GPU ranks (--device cuda with a world above 1): the seed's four
// recipes (TP2, TP2 + DP2 with DP attention, TP2 + EP2, TP2 + DP2 + EP2 with DP attention;
// the `none` MoE backend) against TP1 on one GPU, per test model: teacher-forced logprobs
// of the golden prompts and greedy continuations, within tolerance in the default mode and
// bit for bit in deterministic mode. Twice: one GPU
// per rank over NCCL (skipped with fewer than 2 GPUs), and every rank on one GPU over the
// shared-device test backend (the same layer code, on any GPU machine). OLMoE under
// attention TP, which the GPU attention does not run yet, is refused with a message.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "sparrow/core/cuda/device.h"
#include "sparrow/core/error.h"
#include "sparrow/engine/sync_generate.h"
#include "sparrow/model/model.h"

namespace sparrow {
namespace {

using nlohmann::json;

int gpu_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

std::string model_dir(const std::string& name) { return std::string(SPARROW_TESTDATA_DIR) + "/models/" + name; }

struct Recipe {
  const char* name;
  ParallelConfig layout;
  MoeA2ABackend a2a = MoeA2ABackend::kNone;
};

// The seed's four layouts with both MoE backends.
const Recipe kRecipes[] = {
    {"tp2", {2, 1, 1, false}},
    {"tp2+dp2+dp-attention", {2, 2, 1, true}},
    {"tp2+ep2", {2, 1, 2, false}},
    {"tp2+dp2+ep2+dp-attention", {2, 2, 2, true}},
    {"tp2 alltoall", {2, 1, 1, false}, MoeA2ABackend::kAllToAll},
    {"tp2+dp2+dp-attention alltoall", {2, 2, 1, true}, MoeA2ABackend::kAllToAll},
    {"tp2+ep2 alltoall", {2, 1, 2, false}, MoeA2ABackend::kAllToAll},
    {"tp2+dp2+ep2+dp-attention alltoall", {2, 2, 2, true}, MoeA2ABackend::kAllToAll},
};

std::unique_ptr<Engine> make_engine(const std::string& dir, const ParallelConfig& layout, bool deterministic = false,
                                    MoeA2ABackend a2a = MoeA2ABackend::kNone, bool shared_device = false) {
  EngineOptions o;
  o.max_total_tokens = 4096;
  o.max_running_requests = 16;
  o.log_interval_s = 0;
  o.device = Device::kCUDA;
  o.gpu.cuda_graph_max_bs = 16;
  o.parallel.layout = layout;
  o.parallel.deterministic = deterministic;
  o.parallel.a2a = a2a;
  o.gpu.share_one_device = shared_device;
  return std::make_unique<Engine>(load_model_source(dir, "auto", DType::kBF16), nullptr, o);
}

std::vector<GenerateResult> run(Engine& e, const std::vector<Request>& rs) {
  std::vector<GenerateResult> out;
  for (auto& o : generate_sync(e, rs)) {
    EXPECT_FALSE(o.error) << *o.error;
    if (o.error) std::fprintf(stderr, "generation error: %s\n", o.error->c_str());
    out.push_back(o.result);
  }
  return out;
}

std::vector<Request> golden_requests(const std::string& model, int32_t max_new) {
  std::ifstream f(model_dir(model) + "/golden.json");
  EXPECT_TRUE(f.good()) << "missing golden for " << model;
  std::vector<Request> rs;
  const json golden = json::parse(f);  // (named: a range-for over a temporary's member dangles)
  for (const json& p : golden["prompts"]) {
    Request r;
    r.input_ids = p["input_ids"].get<std::vector<int32_t>>();
    r.sampling.max_new_tokens = max_new;
    r.sampling.temperature = 0;
    r.sampling.ignore_eos = true;
    r.return_logprob = true;
    r.logprob_start_len = 0;
    rs.push_back(std::move(r));
  }
  return rs;
}

// |Δ logprob| over the prompts and the common greedy prefix (plus its first divergence,
// whose distribution both computed from the same prefix), as `sparrow parity` counts.
struct Diff {
  double sum = 0, worst = 0;
  int64_t n = 0, far = 0, common = 0, outputs = 0;
  void add(float a, float b) {
    const double d = std::fabs(double(a) - double(b));
    sum += d, worst = std::max(worst, d), far += d > 0.3, ++n;
  }
};

Diff compare(const std::vector<GenerateResult>& base, const std::vector<GenerateResult>& got) {
  Diff d;
  for (size_t i = 0; i < base.size(); ++i) {
    const GenerateResult &a = base[i], &b = got[i];
    if (b.input_token_logprobs.size() != a.input_token_logprobs.size() ||
        b.output_token_logprobs.size() != b.output_ids.size()) {
      ADD_FAILURE() << "prompt " << i << ": " << b.input_token_logprobs.size() << " input logprobs, expected "
                    << a.input_token_logprobs.size();
      continue;
    }
    for (size_t j = 1; j < a.input_token_logprobs.size(); ++j)
      d.add(*a.input_token_logprobs[j].logprob, *b.input_token_logprobs[j].logprob);
    size_t c = 0;
    while (c < a.output_ids.size() && c < b.output_ids.size() && a.output_ids[c] == b.output_ids[c]) ++c;
    for (size_t j = 0; j < std::min(c + 1, std::min(a.output_ids.size(), b.output_ids.size())); ++j)
      d.add(*a.output_token_logprobs[j].logprob, *b.output_token_logprobs[j].logprob);
    d.common += int64_t(c), d.outputs += int64_t(a.output_ids.size());
  }
  return d;
}


// Every recipe against TP1 on one GPU. The ranks split GEMM reductions differently and
// NCCL sums the partials in its own order, so activations rounded to bf16 differ in the
// last bit here and there; on these tiny random models a near-tied router then sends a
// token to another expert. Bounds as for the GPU against HF (gpu_model_test.cpp): mean
// <= 0.05, at most 5% of positions beyond 0.3, none beyond 1.5. The greedy continuations
// must agree on most tokens. A second pass with one request leaves a DP group idle (it still
// joins every MoE collective) and must give that request's results again.
void check_recipes(const std::string& model, bool shared_device) {
  const std::vector<Request> reqs = golden_requests(model, 8);
  ASSERT_FALSE(reqs.empty()) << model << ": no golden prompts";
  std::vector<GenerateResult> base;
  {
    auto e = make_engine(model_dir(model), {});
    base = run(*e, reqs);
  }
  for (const Recipe& r : kRecipes) {
    // OLMoE normalizes q / k over the whole projection: under attention TP that needs the
    // whole projection on every rank, which the GPU attention does not do yet.
    if (model == "olmoe" && r.layout.tp_size / (r.layout.enable_dp_attention ? r.layout.dp_size : 1) > 1) {
      EXPECT_THROW(make_engine(model_dir(model), r.layout, false, r.a2a, shared_device), InputError) << r.name;
      continue;
    }
    auto e = make_engine(model_dir(model), r.layout, false, r.a2a, shared_device);
    const std::vector<GenerateResult> got = run(*e, reqs);
    ASSERT_EQ(got.size(), base.size()) << r.name;
    const Diff d = compare(base, got);
    const double mean = d.sum / double(std::max<int64_t>(d.n, 1));
    std::printf("[gpu layouts%s %s %s] mean |dlogprob| %.3g, max %.3g, %lld of %lld beyond 0.3; greedy prefix %lld/%lld\n",
                shared_device ? " (one GPU)" : "", model.c_str(), r.name, mean, d.worst, (long long)d.far, (long long)d.n, (long long)d.common,
                (long long)d.outputs);
    std::fflush(stdout);
    EXPECT_LE(mean, 0.05) << r.name;
    EXPECT_LE(double(d.far), 0.05 * double(d.n)) << r.name;
    EXPECT_LE(d.worst, 1.5) << r.name;
    EXPECT_GE(double(d.common), 0.5 * double(d.outputs)) << r.name;
    const std::vector<GenerateResult> alone = run(*e, {reqs[0]});
    const Diff a = compare({got[0]}, alone);
    EXPECT_LE(a.worst, 1.5) << r.name << ": one request (an idle DP group)";
    EXPECT_GE(a.common, a.outputs / 2) << r.name << ": one request (an idle DP group)";
  }
}

// Deterministic mode: every recipe gives the bits of TP1 on one GPU, prompt logprobs and
// greedy tokens alike (the leaf tree in the GEMMs, the slot values completed in rank order).
void check_deterministic(const std::string& model, bool shared_device) {
  const std::vector<Request> reqs = golden_requests(model, 8);
  ASSERT_FALSE(reqs.empty()) << model << ": no golden prompts";
  std::vector<GenerateResult> base;
  {
    auto e = make_engine(model_dir(model), {}, true);
    base = run(*e, reqs);
  }
  for (const Recipe& r : kRecipes) {
    if (model == "olmoe" && r.layout.tp_size / (r.layout.enable_dp_attention ? r.layout.dp_size : 1) > 1) continue;
    auto e = make_engine(model_dir(model), r.layout, true, r.a2a, shared_device);
    const std::vector<GenerateResult> got = run(*e, reqs);
    ASSERT_EQ(got.size(), base.size()) << r.name;
    int64_t differ = 0;
    for (size_t i = 0; i < base.size(); ++i) {
      differ += base[i].output_ids != got[i].output_ids;
      ASSERT_EQ(base[i].input_token_logprobs.size(), got[i].input_token_logprobs.size()) << r.name;
      for (size_t j = 1; j < base[i].input_token_logprobs.size(); ++j)
        differ += *base[i].input_token_logprobs[j].logprob != *got[i].input_token_logprobs[j].logprob;
      for (size_t j = 0; j < std::min(base[i].output_token_logprobs.size(), got[i].output_token_logprobs.size()); ++j)
        differ += *base[i].output_token_logprobs[j].logprob != *got[i].output_token_logprobs[j].logprob;
    }
    std::printf("[gpu deterministic%s %s %s] %lld values differ from TP1\n", shared_device ? " (one GPU)" : "",
                model.c_str(), r.name, (long long)differ);
    std::fflush(stdout);
    EXPECT_EQ(differ, 0) << r.name << ": deterministic mode must give TP1's bits";
  }
}

class GpuLayouts : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuLayouts, DeterministicRecipesOnTwoGpusAreTp1BitForBit) {
  if (gpu_count() < 2) GTEST_SKIP() << "needs 2 GPUs, found " << gpu_count();
  check_deterministic(GetParam(), false);
}

TEST_P(GpuLayouts, DeterministicRecipesSharingOneGpuAreTp1BitForBit) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  check_deterministic(GetParam(), true);
}

TEST_P(GpuLayouts, RecipesOnTwoGpusMatchOneGpu) {
  if (gpu_count() < 2) GTEST_SKIP() << "needs 2 GPUs, found " << gpu_count();
  check_recipes(GetParam(), false);
}

TEST_P(GpuLayouts, RecipesSharingOneGpuMatchOneGpu) {
  if (gpu_count() < 1) GTEST_SKIP() << "no CUDA device";
  check_recipes(GetParam(), true);
}

INSTANTIATE_TEST_SUITE_P(Models, GpuLayouts, ::testing::Values("qwen3_moe", "qwen2_moe", "mixtral", "olmoe"));

}  // namespace
}  // namespace sparrow
