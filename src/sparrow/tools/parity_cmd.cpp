// `sparrow parity`: runs one prompt set through several recipes (each a list of server
// flags: a parallel layout, a combine backend, deterministic mode) and compares every
// recipe with the first: the common greedy prefix, mean and max |Δ logprob| over the
// prompt and the common output, and the first 8 output tokens side by side. Prints a table
// and, with --json-output, writes the same as JSON.
//
//   sparrow parity --model-path DIR --input-ids 1,2,3
//       --recipe "tp2_only=--tp-size 2" --recipe "tp2+dp2+ep2=--tp-size 2 --dp-size 2 --ep-size 2 --enable-dp-attention"
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "sparrow/core/error.h"
#include "sparrow/engine/sync_generate.h"
#include "sparrow/tokenizer/tokenizer.h"
#include "sparrow/tools/cli_util.h"
#include "sparrow/tools/commands.h"
#include "sparrow/tools/parallel_flags.h"

namespace sparrow::tools {
namespace {

using nlohmann::json;

struct ParityArgs {
  std::string model_path, load_format = "auto", dtype = "bfloat16", json_output, tokenizer_path;
  std::vector<std::string> recipes, input_ids, texts;
  int32_t max_new_tokens = 16;
  uint64_t seed = 0;
  int64_t max_total_tokens = 0;
  std::string device = "auto";
  double mem_fraction_static = 0;
  bool disable_cuda_graph = false;
  bool share_one_gpu = false;
};

// The seed's four recipes: the layouts behind the SGLang TP2+DP2+EP2 regression.
const std::vector<std::string> kDefaultRecipes = {
    "tp2_only=--tp-size 2",
    "dp2_only=--tp-size 2 --dp-size 2 --enable-dp-attention",
    "ep2_only=--tp-size 2 --ep-size 2",
    "tp2+dp2+ep2+dp-attention=--tp-size 2 --dp-size 2 --ep-size 2 --enable-dp-attention",
};

struct Recipe {
  std::string name;
  ParallelFlags flags;
};

Recipe parse_recipe(const std::string& spec) {
  const size_t eq = spec.find('=');
  SPARROW_REQUIRE(eq != std::string::npos && eq > 0, "--recipe '{}' must be NAME=FLAGS", spec);
  Recipe r{spec.substr(0, eq), {}};
  CLI::App sub{"recipe"};
  add_parallel_flags(sub, r.flags);
  try {
    sub.parse(spec.substr(eq + 1), false);
  } catch (const CLI::ParseError& e) {
    throw_input_error("--recipe '{}': {}", r.name, e.what());
  }
  return r;
}

struct RecipeRun {
  std::vector<GenerateResult> results;
};

RecipeRun run_recipe(const ParityArgs& a, const LoadedModel& weights, const Recipe& r,
                     const std::vector<std::vector<int32_t>>& prompts) {
  EngineOptions o;
  o.log_interval_s = 0;
  o.max_running_requests = int32_t(std::max<size_t>(prompts.size(), 1));
  int64_t need = 0;
  for (const auto& p : prompts) need += int64_t(p.size()) + a.max_new_tokens;
  o.max_total_tokens = a.max_total_tokens > 0 ? a.max_total_tokens : need;
  r.flags.apply(o);
  apply_device_flags(a.device, a.mem_fraction_static, a.disable_cuda_graph, o.gpu.cuda_graph_max_bs, o.device, o.gpu);
  o.gpu.share_one_device = a.share_one_gpu;
  // Every recipe reads the one copy of the weights (dummy weights are generated once).
  LoadedModel m;
  m.path = weights.path;
  m.load_format = weights.load_format;
  m.dtype = weights.dtype;
  m.seed = weights.seed;
  m.config = weights.config;
  m.source = borrow_weights(*weights.source);
  Engine e(std::move(m), nullptr, o);
  std::vector<Request> reqs;
  for (const auto& p : prompts) {
    Request q;
    q.input_ids = p;
    q.sampling.temperature = 0;
    q.sampling.max_new_tokens = a.max_new_tokens;
    q.sampling.ignore_eos = true;
    q.return_logprob = true;
    q.logprob_start_len = 0;
    reqs.push_back(std::move(q));
  }
  RecipeRun run;
  for (auto& s : generate_sync(e, std::move(reqs))) {
    SPARROW_CHECK(!s.error, "recipe {}: {}", r.name, s.error.value_or(""));
    run.results.push_back(std::move(s.result));
  }
  return run;
}

json compare(const RecipeRun& base, const RecipeRun& got) {
  double sum = 0, worst = 0;
  int64_t n = 0, common_total = 0, out_total = 0;
  json per_prompt = json::array();
  for (size_t i = 0; i < base.results.size(); ++i) {
    const GenerateResult &a = base.results[i], &b = got.results[i];
    auto add = [&](float x, float y) {
      const double d = std::fabs(double(x) - double(y));
      sum += d;
      worst = std::max(worst, d);
      ++n;
    };
    for (size_t j = 1; j < a.input_token_logprobs.size(); ++j) add(*a.input_token_logprobs[j].logprob, *b.input_token_logprobs[j].logprob);
    size_t common = 0;
    while (common < a.output_ids.size() && common < b.output_ids.size() && a.output_ids[common] == b.output_ids[common]) ++common;
    // Output logprobs are comparable up to and including the first differing token: both
    // distributions were computed from the same prefix.
    for (size_t j = 0; j < std::min(common + 1, std::min(a.output_ids.size(), b.output_ids.size())); ++j)
      add(*a.output_token_logprobs[j].logprob, *b.output_token_logprobs[j].logprob);
    json side = json::array();
    for (size_t j = 0; j < std::min<size_t>(8, std::max(a.output_ids.size(), b.output_ids.size())); ++j) {
      auto cell = [&](const GenerateResult& r) {
        return j < r.output_ids.size() ? json::array({r.output_ids[j], *r.output_token_logprobs[j].logprob}) : json(nullptr);
      };
      side.push_back({{"base", cell(a)}, {"recipe", cell(b)}});
    }
    per_prompt.push_back({{"common_prefix", common}, {"output_tokens", a.output_ids.size()}, {"first_tokens", side}});
    common_total += int64_t(common);
    out_total += int64_t(a.output_ids.size());
  }
  return {{"common_greedy_prefix", common_total}, {"output_tokens", out_total}, {"positions_compared", n},
          {"mean_abs_dlogprob", n ? sum / double(n) : 0.0}, {"max_abs_dlogprob", worst}, {"prompts", per_prompt}};
}

void run_parity(const ParityArgs& a) {
  SPARROW_REQUIRE(!a.model_path.empty(), "--model-path is required");
  std::vector<Recipe> recipes;
  for (const auto& spec : a.recipes.empty() ? kDefaultRecipes : a.recipes) recipes.push_back(parse_recipe(spec));
  SPARROW_REQUIRE(recipes.size() >= 2, "give at least two --recipe (the first is the baseline)");
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& ids : a.input_ids) prompts.push_back(parse_id_list(ids, "--input-ids"));
  if (!a.texts.empty()) {
    auto tok = Tokenizer::from_dir(a.tokenizer_path.empty() ? a.model_path : a.tokenizer_path);
    for (const auto& t : a.texts) prompts.push_back(tok->encode(t));
  }
  if (prompts.empty())  // a fixed default prompt set: ids valid for any vocabulary of 256+
    for (int i = 0; i < 4; ++i) {
      std::vector<int32_t> p;
      for (int j = 0; j < 8 + 13 * i; ++j) p.push_back((j * 37 + i * 101 + 11) % 251);
      prompts.push_back(p);
    }
  const LoadedModel weights = load_model_source(a.model_path, a.load_format, parse_dtype(a.dtype), a.seed);
  std::vector<RecipeRun> runs;
  for (const Recipe& r : recipes) {
    std::fprintf(stderr, "parity: running %s (%s)\n", r.name.c_str(), r.flags.describe().c_str());
    runs.push_back(run_recipe(a, weights, r, prompts));
  }
  json report = {{"model_path", a.model_path}, {"dtype", a.dtype}, {"device", a.device}, {"share_one_gpu", a.share_one_gpu}, {"baseline", recipes[0].name}, {"recipes", json::array()}};
  std::printf("%-34s %14s %14s %14s\n", "recipe (vs baseline)", "greedy prefix", "mean |dlp|", "max |dlp|");
  for (size_t i = 0; i < recipes.size(); ++i) {
    json c = compare(runs[0], runs[i]);
    c["name"] = recipes[i].name;
    c["flags"] = recipes[i].flags.describe();
    std::printf("%-34s %7lld/%-6lld %14.3g %14.3g\n", recipes[i].name.c_str(), (long long)c["common_greedy_prefix"].get<int64_t>(),
                (long long)c["output_tokens"].get<int64_t>(), c["mean_abs_dlogprob"].get<double>(), c["max_abs_dlogprob"].get<double>());
    report["recipes"].push_back(c);
  }
  // First prompt's first 8 tokens side by side.
  std::printf("\nfirst prompt, first tokens (id: logprob)\n");
  for (size_t i = 0; i < recipes.size(); ++i) {
    std::printf("%-34s", recipes[i].name.c_str());
    const GenerateResult& r = runs[i].results[0];
    for (size_t j = 0; j < std::min<size_t>(8, r.output_ids.size()); ++j)
      std::printf(" %6d:%-8.4f", r.output_ids[j], *r.output_token_logprobs[j].logprob);
    std::printf("\n");
  }
  if (!a.json_output.empty()) {
    std::ofstream f(a.json_output);
    SPARROW_REQUIRE(f.good(), "cannot write {}", a.json_output);
    f << report.dump(2) << "\n";
  }
}

}  // namespace

void register_parity_command(CLI::App& app) {
  auto a = std::make_shared<ParityArgs>();
  auto* cmd = app.add_subcommand("parity", "Compare greedy outputs and logprobs of several parallel recipes");
  cmd->add_option("--model-path", a->model_path, "Model directory, or a config.json with --load-format dummy");
  cmd->add_option("--load-format", a->load_format, "auto | safetensors | dummy");
  cmd->add_option("--dtype", a->dtype, "bfloat16 | float32");
  cmd->add_option("--recipe", a->recipes, "NAME=FLAGS (repeatable; the first is the baseline). Default: the seed's four");
  cmd->add_option("--input-ids", a->input_ids, "Prompt token ids (repeatable)");
  cmd->add_option("--text", a->texts, "Prompt text (repeatable; needs a tokenizer)");
  cmd->add_option("--tokenizer-path", a->tokenizer_path, "Tokenizer directory (default: the model directory)");
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Greedy tokens per prompt");
  cmd->add_option("--max-total-tokens", a->max_total_tokens, "KV pool per DP group (default: what the prompts need)");
  cmd->add_option("--seed", a->seed, "Seed of --load-format dummy");
  cmd->add_option("--device", a->device, "auto (cuda when a GPU is present) | cuda | cpu (every recipe; GPU: one per rank)");
  cmd->add_option("--mem-fraction-static", a->mem_fraction_static, "GPU: share of device memory for weights + KV + workspace");
  cmd->add_flag("--disable-cuda-graph", a->disable_cuda_graph, "Run decode without CUDA graphs");
  cmd->add_flag("--share-one-gpu", a->share_one_gpu,
                "GPU: every rank of a recipe on the current GPU (the shared-device test backend, rank-order sums; "
                "checks layouts on a one-GPU machine, slowly)");
  cmd->add_option("--json-output", a->json_output, "Also write the report as JSON to this file");
  cmd->callback([a] { run_parity(*a); });
}

}  // namespace sparrow::tools
