// The `sparrow tokenize` / `sparrow detokenize` commands end to end: JSON out, exit code 2 and
// a message for bad input.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

namespace {

struct Result {
  int code;
  std::string out;
};

Result run(const std::string& args) {
  std::string cmd = std::string(SPARROW_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, ""};
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const std::string kQwen = std::string(SPARROW_TESTDATA_DIR) + "/tokenizers/qwen3";

TEST(TokenizerCli, TokenizeText) {
  auto r = run("tokenize --tokenizer-path " + kQwen + " --text 'Hello world'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json::parse("[9707, 1879]"));
}

TEST(TokenizerCli, TokenizeMessagesAndFiles) {
  std::string path = ::testing::TempDir() + "/sparrow_cli_messages.json";
  std::ofstream(path) << R"([{"role": "user", "content": "hi"}])";
  auto r = run("tokenize --tokenizer-path " + kQwen + " --messages-file " + path + " --add-generation-prompt");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt"], "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(j["ids"].size(), 9u);
  std::string text_path = ::testing::TempDir() + "/sparrow_cli_text.txt";
  std::ofstream(text_path) << "Hello world";
  r = run("tokenize --tokenizer-path " + kQwen + " --text-file " + text_path);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json::parse("[9707, 1879]"));
}

TEST(TokenizerCli, Detokenize) {
  auto r = run("detokenize --tokenizer-path " + kQwen + " --ids 151644,9707,1879 --skip-special-tokens");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "Hello world");
}

TEST(TokenizerCli, BadInputExitsWithTwo) {
  auto r = run("tokenize --tokenizer-path /nonexistent --text x");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("tokenizer.json"), std::string::npos) << r.out;
  r = run("tokenize --tokenizer-path " + kQwen + " --messages 'not json'");
  EXPECT_EQ(r.code, 2);
  r = run("detokenize --tokenizer-path " + kQwen + " --ids 1,abc");
  EXPECT_EQ(r.code, 2);
  // a tokenizer directory without a chat template
  std::string dir = ::testing::TempDir() + "/sparrow_no_template";
  std::string mk = "mkdir -p " + dir + " && cp " + kQwen + "/tokenizer.json " + dir + "/";
  ASSERT_EQ(std::system(mk.c_str()), 0);
  r = run("tokenize --tokenizer-path " + dir + " --messages '[{\"role\":\"user\",\"content\":\"x\"}]'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("chat template"), std::string::npos) << r.out;
}

}  // namespace
