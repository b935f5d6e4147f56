// `sparrow generate` end to end: the real binary on a real (tiny) checkpoint, its JSON
// shape, and the bad-argument catalogue (clear message, exit code 2, no crash).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <sstream>
#include <string>
#include <sys/wait.h>

namespace {

struct RunResult {
  int exit_code;
  std::string out;  // stdout and stderr together
};

RunResult run_sparrow(const std::string& args) {
  // --device cpu: the CPU suite also where a GPU is present (tests/gpu/ covers the GPU).
  const std::string cmd = std::string(SPARROW_BINARY) + " " + args + " --device cpu 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const std::string kModel = std::string(SPARROW_TESTDATA_DIR) + "/models/qwen3_moe";

TEST(GenerateCommand, PrintsSglangShapedJsonPerSequence) {
  const RunResult r = run_sparrow("generate --model-path " + kModel +
                                  " --input-ids 1,2,3,4 --input-ids 7 --max-new-tokens 5 --ignore-eos"
                                  " --return-logprob --logprob-start-len 0 --top-logprobs-num 3 --dtype float32");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<nlohmann::json> objs;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') objs.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto& o = objs[i];
    const auto& m = o["meta_info"];
    const int prompt = i == 0 ? 4 : 1;
    EXPECT_EQ(o["output_ids"].size(), 5u);
    EXPECT_EQ(m["prompt_tokens"], prompt);
    EXPECT_EQ(m["completion_tokens"], 5);
    EXPECT_EQ(m["finish_reason"]["type"], "length");
    EXPECT_EQ(m["finish_reason"]["length"], 5);
    ASSERT_EQ(m["input_token_logprobs"].size(), size_t(prompt));
    EXPECT_TRUE(m["input_token_logprobs"][0][0].is_null());
    EXPECT_EQ(m["input_token_logprobs"][0][1], i == 0 ? 1 : 7);
    ASSERT_EQ(m["output_token_logprobs"].size(), 5u);
    EXPECT_LE(m["output_token_logprobs"][0][0].get<double>(), 0.0);
    EXPECT_EQ(m["output_token_logprobs"][0][1], o["output_ids"][0]);
    ASSERT_EQ(m["output_top_logprobs"].size(), 5u);
    EXPECT_EQ(m["output_top_logprobs"][0].size(), 3u);
    EXPECT_TRUE(m["input_top_logprobs"][0].is_null());
  }
}

TEST(GenerateCommand, ScoreOnlyWithZeroNewTokens) {
  const RunResult r = run_sparrow("generate --model-path " + kModel + " --input-ids 5,6,7 --max-new-tokens 0 --logprob-start-len 1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto o = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(o["output_ids"].size(), 0u);
  EXPECT_EQ(o["meta_info"]["finish_reason"]["length"], 0);
  ASSERT_EQ(o["meta_info"]["input_token_logprobs"].size(), 2u);
  EXPECT_FALSE(o["meta_info"]["input_token_logprobs"][0][0].is_null());
}

TEST(GenerateCommand, BadArgumentsGiveClearErrors) {
  struct Bad {
    std::string args, message;
  };
  const std::vector<Bad> cases = {
      {"generate --input-ids 1", "--model-path is required"},
      {"generate --model-path /nonexistent/model --input-ids 1", "/nonexistent/model"},
      {"generate --model-path " + kModel, "--input-ids"},
      {"generate --model-path " + kModel + " --input-ids 1,x", "'x' is not a token id"},
      {"generate --model-path " + kModel + " --input-ids 1,,2", "empty item"},
      {"generate --model-path " + kModel + " --input-ids 1,999999", "outside the vocabulary"},
      {"generate --model-path " + kModel + " --input-ids -1", "outside the vocabulary"},
      {"generate --model-path " + kModel + " --input-ids 1 --dtype int8", "unsupported dtype 'int8'"},
      {"generate --model-path " + kModel + " --input-ids 1 --load-format pickle", "unknown --load-format 'pickle'"},
      {"generate --model-path " + kModel + " --input-ids 1 --max-new-tokens 100000", "exceeds the context length"},
      {"generate --model-path " + kModel + " --input-ids 1 --max-new-tokens -3", "max_new_tokens must be >= 0"},
      {"generate --model-path " + kModel + " --input-ids 1,2 --logprob-start-len 5", "logprob_start_len"},
      {"generate --model-path " + kModel + " --input-ids 1 --tp-size 2 --nnodes 2 --node-rank 2 --dist-init-addr h:1",
       "--node-rank 2 must be in 0..1"},
      {"generate --model-path " + kModel + " --input-ids 1 --tp-size 2 --nnodes 2 --dist-init-addr 127.0.0.1:29500",
       "multi-node serving is not wired yet"},
  };
  for (const Bad& b : cases) {
    const RunResult r = run_sparrow(b.args);
    EXPECT_EQ(r.exit_code, 2) << b.args << "\n" << r.out;
    EXPECT_NE(r.out.find(b.message), std::string::npos) << b.args << "\n" << r.out;
  }
}

}  // namespace
