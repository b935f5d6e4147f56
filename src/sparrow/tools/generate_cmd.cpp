// `sparrow generate`: offline generation / scoring through the serving engine. Prints one
// JSON object per sequence, one per line, in the shape of SGLang's /generate response.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "sparrow/core/error.h"
#include "sparrow/engine/response_json.h"
#include "sparrow/engine/sync_generate.h"
#include "sparrow/model/model.h"
#include "sparrow/tools/commands.h"
#include "sparrow/tools/parallel_flags.h"
#include "sparrow/tokenizer/tokenizer.h"
#include "sparrow/tools/cli_util.h"

#include <nlohmann/json.hpp>

namespace sparrow::tools {
namespace {

struct GenerateArgs {
  std::string model_path;
  std::string load_format = "auto";
  std::string dtype = "bfloat16";
  std::vector<std::string> input_ids;
  std::vector<std::string> texts;
  std::string messages;
  std::string tokenizer_path;
  bool skip_special_tokens = true;
  int32_t max_new_tokens = 16;
  float temperature = 0.f;
  bool return_logprob = false;
  int32_t logprob_start_len = -1;
  int32_t top_logprobs_num = 0;
  bool ignore_eos = false;
  uint64_t seed = 0;
  int64_t chunked_prefill_size = 8192;
  std::string kv_cache_dtype = "auto";
  std::string device = "auto";
  double mem_fraction_static = 0;
  bool disable_cuda_graph = false;
  int64_t cuda_graph_max_bs = 160;
  ParallelFlags parallel;
};

// The prompts in order: every --input-ids, then every --text, then --messages.
std::vector<std::vector<int32_t>> prompts(const GenerateArgs& a, const Tokenizer* tok) {
  std::vector<std::vector<int32_t>> out;
  for (const std::string& ids : a.input_ids) out.push_back(parse_id_list(ids, "--input-ids"));
  for (const std::string& text : a.texts) out.push_back(tok->encode(text));
  if (!a.messages.empty()) {
    SPARROW_REQUIRE(tok->has_chat_template(), "--messages: the tokenizer at {} has no chat template",
                    a.tokenizer_path.empty() ? a.model_path : a.tokenizer_path);
    const nlohmann::ordered_json msgs = parse_json_arg(a.messages, "--messages");
    SPARROW_REQUIRE(msgs.is_array(), "--messages must be a JSON array of {{\"role\", \"content\"}} objects");
    out.push_back(tok->encode(tok->apply_chat_template(msgs, nullptr, true)));
  }
  return out;
}

void run_generate(const GenerateArgs& a) {
  SPARROW_REQUIRE(!a.model_path.empty(), "--model-path is required (a model directory, or a config.json with --load-format dummy)");
  SPARROW_REQUIRE(!a.input_ids.empty() || !a.texts.empty() || !a.messages.empty(),
                  "give a prompt: --input-ids, --text / --text-file or --messages / --messages-file");
  std::unique_ptr<Tokenizer> tok;
  if (!a.texts.empty() || !a.messages.empty() || !a.tokenizer_path.empty())
    tok = Tokenizer::from_dir(a.tokenizer_path.empty() ? a.model_path : a.tokenizer_path);
  std::vector<Request> reqs;
  int64_t kv_tokens = 0;
  const auto all = prompts(a, tok.get());
  for (size_t i = 0; i < all.size(); ++i) {
    Request r;
    r.rid = std::to_string(i);
    r.input_ids = all[i];
    r.sampling.skip_special_tokens = a.skip_special_tokens;
    r.sampling.max_new_tokens = a.max_new_tokens;
    r.sampling.temperature = a.temperature;
    r.sampling.ignore_eos = a.ignore_eos;
    r.sampling.sampling_seed = a.seed;
    r.return_logprob = a.return_logprob || a.top_logprobs_num > 0 || a.logprob_start_len >= 0;
    r.logprob_start_len = a.logprob_start_len;
    r.top_logprobs_num = a.top_logprobs_num;
    kv_tokens += int64_t(r.input_ids.size()) + std::max(a.max_new_tokens, 0);
    reqs.push_back(std::move(r));
  }
  LoadedModel m = load_model_source(a.model_path, a.load_format, parse_dtype(a.dtype), a.seed);
  EngineOptions opts;
  opts.max_total_tokens = std::max<int64_t>(kv_tokens, 1);
  opts.max_running_requests = int32_t(reqs.size());
  opts.chunked_prefill_size = a.chunked_prefill_size;
  opts.log_interval_s = 0;
  if (a.kv_cache_dtype != "auto") opts.kv_cache_dtype = parse_dtype(a.kv_cache_dtype);
  a.parallel.apply(opts);
  apply_device_flags(a.device, a.mem_fraction_static, a.disable_cuda_graph, a.cuda_graph_max_bs, opts.device, opts.gpu);
  Engine engine(std::move(m), tok.get(), opts);
  for (const SyncOutput& o : generate_sync(engine, std::move(reqs))) {
    SPARROW_CHECK(!o.error, "generation failed: {}", o.error.value_or(""));
    nlohmann::json j = generate_response_json(o.result);
    if (tok) j["text"] = o.text;
    std::printf("%s\n", j.dump().c_str());
  }
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Run a batch of prompts offline and print SGLang-style JSON results");
  cmd->add_option("--model-path", a->model_path, "Model directory (config.json + safetensors), or a config.json for dummy weights");
  cmd->add_option("--load-format", a->load_format, "auto | safetensors | dummy (seeded random weights)");
  cmd->add_option("--dtype", a->dtype, "bfloat16 (default) | float32");
  cmd->add_option("--input-ids", a->input_ids, "Comma-separated prompt token ids; repeat for a batch");
  cmd->add_option("--text", a->texts, "Prompt text (tokenized without special-token parsing changes); repeatable");
  cmd->add_option_function<std::string>("--text-file", [a](const std::string& f) { a->texts.push_back(read_file_arg(f, "--text-file")); },
                                        "Read a prompt text from a file (any bytes)");
  cmd->add_option("--messages", a->messages, "Chat messages as a JSON array; rendered with the chat template");
  cmd->add_option_function<std::string>("--messages-file", [a](const std::string& f) { a->messages = read_file_arg(f, "--messages-file"); },
                                        "Read --messages from a file");
  cmd->add_option("--tokenizer-path", a->tokenizer_path, "Tokenizer directory (default: the model directory)");
  cmd->add_option("--skip-special-tokens", a->skip_special_tokens, "Drop special tokens from output text (default true)");
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate (0: score the prompt only)");
  cmd->add_option("--temperature", a->temperature, "0 = greedy");
  cmd->add_flag("--return-logprob", a->return_logprob, "Return logprobs");
  cmd->add_option("--logprob-start-len", a->logprob_start_len, "First prompt position with a returned logprob (-1: none)");
  cmd->add_option("--top-logprobs-num", a->top_logprobs_num, "Top-N alternatives per position");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Do not stop at the end-of-sequence token");
  cmd->add_option("--seed", a->seed, "Sampling seed, and the seed of --load-format dummy");
  cmd->add_option("--chunked-prefill-size", a->chunked_prefill_size, "Max tokens per prefill step");
  cmd->add_option("--kv-cache-dtype", a->kv_cache_dtype, "auto (the model dtype) | bfloat16 | float32");
  cmd->add_option("--device", a->device, "auto (cuda when a GPU is present) | cuda | cpu");
  cmd->add_option("--mem-fraction-static", a->mem_fraction_static, "GPU: share of device memory for weights + KV + workspace");
  cmd->add_option("--cuda-graph-max-bs", a->cuda_graph_max_bs, "Largest decode batch replayed from a CUDA graph");
  cmd->add_flag("--disable-cuda-graph", a->disable_cuda_graph, "Run decode without CUDA graphs");
  add_parallel_flags(*cmd, a->parallel);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace sparrow::tools
