// Encode/decode against Hugging Face `tokenizers` goldens (python/make_tokenizer_goldens.py):
// every line of Persuasion, hand-picked hard inputs, and random id sequences.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/incremental_detokenizer.h"
#include "tokenizer_test_util.h"

namespace sparrow {
namespace {

using testing::read_json;
using testing::read_text;
using testing::testdata;
using testing::tokenizer;

class TokenizerGolden : public ::testing::TestWithParam<std::string> {};

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
}

TEST_P(TokenizerGolden, CorpusLines) {
  const Tokenizer& tok = tokenizer(GetParam());
  auto golden = read_json("tokenizers/goldens/" + GetParam() + "_corpus.json");
  auto lines = split_lines(read_text(testdata(golden["corpus"].get<std::string>())));
  const auto& line_ids = golden["line_ids"];
  ASSERT_EQ(lines.size(), line_ids.size());
  int failures = 0;
  for (size_t i = 0; i < lines.size() && failures < 5; ++i) {
    auto expected = line_ids[i].get<std::vector<int32_t>>();
    auto ids = tok.encode(lines[i]);
    if (ids != expected) {
      ++failures;
      ADD_FAILURE() << "line " << i << ": " << lines[i];
    }
    if (tok.decode(ids) != lines[i]) {
      ++failures;
      ADD_FAILURE() << "decode of line " << i;
    }
  }
}

TEST_P(TokenizerGolden, Cases) {
  const Tokenizer& tok = tokenizer(GetParam());
  auto golden = read_json("tokenizers/goldens/" + GetParam() + "_cases.json");
  EXPECT_EQ(tok.vocab_size(), golden["vocab_size"].get<int32_t>());
  for (const auto& c : golden["cases"]) {
    std::string text = c["text"];
    std::string shown = text.substr(0, 80);
    auto ids = c["ids"].get<std::vector<int32_t>>();
    auto ids_ns = c.contains("ids_no_special") ? c["ids_no_special"].get<std::vector<int32_t>>() : ids;
    std::string decoded = c.contains("decoded") ? c["decoded"].get<std::string>() : text;
    std::string decoded_skip = c.contains("decoded_skip") ? c["decoded_skip"].get<std::string>() : decoded;
    EXPECT_EQ(tok.encode(text), ids) << shown;
    EXPECT_EQ(tok.encode(text, /*parse_special=*/false), ids_ns) << shown;
    EXPECT_EQ(tok.decode(ids, false), decoded) << shown;
    EXPECT_EQ(tok.decode(ids, true), decoded_skip) << shown;
  }
}

TEST_P(TokenizerGolden, RandomIdDecodes) {
  const Tokenizer& tok = tokenizer(GetParam());
  auto golden = read_json("tokenizers/goldens/" + GetParam() + "_cases.json");
  for (const auto& d : golden["decodes"]) {
    auto ids = d["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      std::string expected = d[skip ? "decoded_skip" : "decoded"];
      EXPECT_EQ(tok.decode(ids, skip), expected) << d["ids"].dump();
      IncrementalDetokenizer inc(tok, skip);
      std::string streamed;
      for (int32_t id : ids) streamed += inc.push(id);
      streamed += inc.flush();
      EXPECT_EQ(streamed, expected) << d["ids"].dump();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerGolden, ::testing::Values("qwen3", "deepseek_v3"));

TEST(TokenizerConfig, SpecialTokensAndStopIds) {
  const Tokenizer& qwen = tokenizer("qwen3");
  EXPECT_EQ(qwen.eos_token(), "<|im_end|>");
  EXPECT_EQ(qwen.eos_token_id(), 151645);
  EXPECT_EQ(qwen.pad_token_id(), 151643);
  EXPECT_EQ(qwen.bos_token(), "");
  EXPECT_EQ(qwen.bos_token_id(), 151643);  // from generation_config.json
  EXPECT_EQ(qwen.stop_token_ids(), (std::vector<int32_t>{151645, 151643}));
  EXPECT_TRUE(qwen.has_chat_template());
  EXPECT_TRUE(qwen.is_special(151644));
  EXPECT_FALSE(qwen.is_special(151667));  // <think> is added but not special
  EXPECT_EQ(qwen.token_to_id("<think>"), 151667);
  EXPECT_EQ(qwen.id_to_token(151644), "<|im_start|>");

  const Tokenizer& ds = tokenizer("deepseek_v3");
  EXPECT_EQ(ds.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(ds.bos_token_id(), 0);
  EXPECT_EQ(ds.eos_token_id(), 1);
  EXPECT_EQ(ds.stop_token_ids(), (std::vector<int32_t>{1}));
  EXPECT_TRUE(ds.add_bos_token());
}

TEST(TokenizerConfig, MissingDirectoryIsInputError) {
  EXPECT_THROW(Tokenizer::from_dir("/nonexistent/tokenizer/dir"), InputError);
}

}  // namespace
}  // namespace sparrow

namespace sparrow {
namespace {

// Added-token flags (lstrip, rstrip, single_word, normalized, special) against HF on a small
// tokenizer built by the golden script, since Qwen3 and DeepSeek-V3 leave them all off.
TEST(TokenizerAddedTokenFlags, MatchHf) {
  auto tok = Tokenizer::from_dir(testing::testdata("tokenizers/flags"));
  auto golden = testing::read_json("tokenizers/goldens/flags_cases.json");
  for (const auto& c : golden["cases"]) {
    std::string text = c["text"];
    EXPECT_EQ(tok->encode(text), c["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tok->encode(text, false), c["ids_no_special"].get<std::vector<int32_t>>()) << text;
    auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok->decode(ids, false), c["decoded"].get<std::string>()) << text;
    EXPECT_EQ(tok->decode(ids, true), c["decoded_skip"].get<std::string>()) << text;
  }
}

}  // namespace
}  // namespace sparrow

namespace sparrow {
namespace {

// Config files beside tokenizer.json: list-form chat_template, chat_template.jinja override,
// eos ids from generation_config.json (int or list) or else config.json.
TEST(TokenizerConfig, OptionalFilesAndForms) {
  std::string dir = ::testing::TempDir() + "/sparrow_tok_cfg";
  std::string src = testing::testdata("tokenizers/flags/tokenizer.json");
  ASSERT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir + " && cp " + src + " " + dir + "/").c_str()), 0);
  auto write = [&](const std::string& name, const std::string& text) { std::ofstream(dir + "/" + name) << text; };
  write("tokenizer_config.json",
        R"({"eos_token": {"content": "<|im_end|>", "__type": "AddedToken"}, "pad_token": "<|im_start|>",
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ eos_token }}"}]})");
  write("config.json", R"({"eos_token_id": 7, "bos_token_id": 5})");
  auto msgs = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "x"}}});
  {
    auto tok = Tokenizer::from_dir(dir);
    EXPECT_EQ(tok->apply_chat_template(msgs, nullptr, false), "D<|im_end|>");
    EXPECT_EQ(tok->eos_token_id(), 3257);
    EXPECT_EQ(tok->pad_token_id(), 3256);
    EXPECT_EQ(tok->bos_token_id(), 5);
    EXPECT_EQ(tok->stop_token_ids(), (std::vector<int32_t>{7, 3257}));
  }
  write("generation_config.json", R"({"eos_token_id": 9})");
  write("chat_template.jinja", "J{% if add_generation_prompt %}!{% endif %}\n");
  {
    auto tok = Tokenizer::from_dir(dir);
    EXPECT_EQ(tok->apply_chat_template(msgs, nullptr, true), "J!");
    EXPECT_EQ(tok->stop_token_ids(), (std::vector<int32_t>{9, 3257}));
  }
  write("chat_template.jinja", "{% for %}");
  {
    auto tok = Tokenizer::from_dir(dir);  // a broken template does not stop tokenization
    EXPECT_EQ(tok->encode("<|im_end|>"), (std::vector<int32_t>{3257}));
    EXPECT_THROW(tok->apply_chat_template(msgs, nullptr, true), InputError);
  }
  write("tokenizer_config.json", "{not json");
  EXPECT_THROW(Tokenizer::from_dir(dir), InputError);
}

}  // namespace
}  // namespace sparrow

namespace sparrow {
namespace {

// Split behaviours (Removed, MergedWithPrevious, MergedWithNext), String patterns and the
// GPT-2 regex of ByteLevel(use_regex=true), each swapped into the small test tokenizer.
TEST(TokenizerPreTokenizerVariants, MatchHf) {
  auto base = nlohmann::json::parse(testing::read_text(testing::testdata("tokenizers/flags/tokenizer.json")));
  auto golden = testing::read_json("tokenizers/goldens/flags_cases.json");
  for (const auto& v : golden["pre_tokenizer_variants"]) {
    auto tj = base;
    tj["pre_tokenizer"] = nlohmann::json::parse(v["pre_tokenizer"].dump());
    auto tok = Tokenizer::from_json(tj);
    for (const auto& c : v["cases"]) {
      std::string text = c["text"];
      EXPECT_EQ(tok->encode(text), c["ids"].get<std::vector<int32_t>>()) << v["pre_tokenizer"].dump() << "\n" << text;
    }
  }
}

}  // namespace
}  // namespace sparrow
