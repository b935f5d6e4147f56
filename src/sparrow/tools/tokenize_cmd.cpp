// `sparrow tokenize` and `sparrow detokenize`: the tokenizer and chat template from the
// command line, printing JSON, so they can be checked against Hugging Face by hand or script.
//   sparrow tokenize --tokenizer-path DIR --text "..."            -> {"ids": [...]}
//   sparrow tokenize --tokenizer-path DIR --messages '[...]' [--add-generation-prompt]
//                                                                -> {"prompt": "...", "ids": [...]}
//   sparrow detokenize --tokenizer-path DIR --ids 1,2,3 [--skip-special-tokens] -> {"text": "..."}
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/tokenizer.h"
#include "sparrow/tools/cli_util.h"
#include "sparrow/tools/commands.h"

namespace sparrow::tools {

namespace {

void print_json(const nlohmann::ordered_json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

struct TokenizeOptions {
  std::string tokenizer_path, text, text_file, messages, messages_file, tools, kwargs;
  bool add_generation_prompt = false;
  bool no_parse_special = false;
};

struct DetokenizeOptions {
  std::string tokenizer_path, ids;
  bool skip_special = false;
};

void run_tokenize(const TokenizeOptions& o) {
  auto tok = Tokenizer::from_dir(o.tokenizer_path);
  nlohmann::ordered_json out;
  bool has_messages = !o.messages.empty() || !o.messages_file.empty();
  if (has_messages) {
    auto messages = parse_json_arg(o.messages_file.empty() ? o.messages : read_file_arg(o.messages_file, "--messages-file"), "--messages");
    auto tools = o.tools.empty() ? nlohmann::ordered_json() : parse_json_arg(o.tools, "--tools");
    auto kwargs = o.kwargs.empty() ? nlohmann::ordered_json() : parse_json_arg(o.kwargs, "--chat-template-kwargs");
    SPARROW_REQUIRE(tok->has_chat_template(), "the tokenizer in {} has no chat template, so --messages cannot be used",
                    o.tokenizer_path);
    std::string prompt = tok->apply_chat_template(messages, tools, o.add_generation_prompt, kwargs);
    out["prompt"] = prompt;
    out["ids"] = tok->encode(prompt, true);
  } else {
    std::string text = o.text_file.empty() ? o.text : read_file_arg(o.text_file, "--text-file");
    out["ids"] = tok->encode(text, !o.no_parse_special);
  }
  print_json(out);
}

void run_detokenize(const DetokenizeOptions& o) {
  auto tok = Tokenizer::from_dir(o.tokenizer_path);
  // Accept "[1, 2, 3]" as well as "1,2,3".
  std::string list = o.ids;
  std::erase_if(list, [](char c) { return c == '[' || c == ']'; });
  std::vector<int32_t> ids = list.find_first_not_of(" \t") == std::string::npos ? std::vector<int32_t>{} : parse_id_list(list, "--ids");
  for (int32_t id : ids)
    SPARROW_REQUIRE(id >= 0 && id < tok->vocab_size(), "--ids: '{}' is not a token id (0 .. {})", id, tok->vocab_size() - 1);
  nlohmann::ordered_json out;
  out["text"] = tok->decode(ids, o.skip_special);
  print_json(out);
}

}  // namespace

void register_tokenize_commands(CLI::App& app) {
  auto topt = std::make_shared<TokenizeOptions>();
  auto* t = app.add_subcommand("tokenize", "Encode text, or render a chat and encode it, printing JSON");
  t->add_option("--tokenizer-path", topt->tokenizer_path, "Directory with tokenizer.json (+ tokenizer_config.json)")
      ->required();
  auto* text = t->add_option("--text", topt->text, "Text to encode");
  auto* text_file = t->add_option("--text-file", topt->text_file, "File whose bytes are the text to encode");
  auto* msgs = t->add_option("--messages", topt->messages, "Chat messages as a JSON array");
  auto* msgs_file = t->add_option("--messages-file", topt->messages_file, "File with chat messages as a JSON array");
  t->add_option("--tools", topt->tools, "Tool schemas as a JSON array (with --messages)");
  t->add_option("--chat-template-kwargs", topt->kwargs, "Extra template variables as a JSON object, e.g. "
                                                        "'{\"enable_thinking\": false}'");
  t->add_flag("--add-generation-prompt", topt->add_generation_prompt, "End the prompt with the assistant header");
  t->add_flag("--no-parse-special", topt->no_parse_special, "Encode special-token text as plain text");
  auto* group = t->add_option_group("input", "what to encode");
  group->add_options(text, text_file, msgs, msgs_file);
  group->require_option(1);
  t->callback([topt] { run_tokenize(*topt); });

  auto dopt = std::make_shared<DetokenizeOptions>();
  auto* d = app.add_subcommand("detokenize", "Decode token ids, printing JSON");
  d->add_option("--tokenizer-path", dopt->tokenizer_path, "Directory with tokenizer.json")->required();
  d->add_option("--ids", dopt->ids, "Comma-separated token ids")->required();
  d->add_flag("--skip-special-tokens", dopt->skip_special, "Leave special tokens out of the text");
  d->callback([dopt] { run_detokenize(*dopt); });
}

}  // namespace sparrow::tools
