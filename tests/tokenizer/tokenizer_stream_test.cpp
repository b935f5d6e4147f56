// Incremental detokenization and robustness: streaming must equal a full decode chunk by chunk
// with every chunk valid UTF-8, and random bytes / random ids must never crash or produce
// invalid UTF-8 (the CI-sized sibling of fuzz/tokenizer_fuzz.cpp).
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "sparrow/tokenizer/incremental_detokenizer.h"
#include "sparrow/tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace sparrow {
namespace {

using testing::read_json;
using testing::tokenizer;

class TokenizerStream : public ::testing::TestWithParam<std::string> {};

void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip, size_t step = 1) {
  IncrementalDetokenizer inc(tok, skip);
  std::string all;
  for (size_t i = 0; i < ids.size(); i += step) {
    size_t n = std::min(step, ids.size() - i);
    std::string chunk = inc.push(std::span<const int32_t>(ids.data() + i, n));
    ASSERT_TRUE(utf8::is_valid(chunk));
    all += chunk;
  }
  std::string last = inc.flush();
  ASSERT_TRUE(utf8::is_valid(last));
  all += last;
  ASSERT_EQ(all, tok.decode(ids, skip));
}

TEST_P(TokenizerStream, GoldenCasesStreamLikeFullDecode) {
  const Tokenizer& tok = tokenizer(GetParam());
  auto golden = read_json("tokenizers/goldens/" + GetParam() + "_cases.json");
  for (const auto& c : golden["cases"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) check_stream(tok, ids, skip);
    check_stream(tok, ids, false, 3);
  }
}

TEST_P(TokenizerStream, RandomBytesAndIds) {
  const Tokenizer& tok = tokenizer(GetParam());
  std::mt19937 rng(42);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes(rng() % 64, '\0');
    for (auto& b : bytes) {
      // bias towards UTF-8 lead/continuation bytes, whitespace and '<' so that interesting
      // paths (broken sequences, special-token prefixes) are hit often
      uint32_t r = rng() % 10;
      b = static_cast<char>(r < 3 ? 0x80 + rng() % 0x80 : r < 4 ? " \n\t<|>"[rng() % 6] : rng() % 256);
    }
    auto ids = tok.encode(bytes, iter % 2 == 0);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
    std::string text = tok.decode(ids);
    ASSERT_TRUE(utf8::is_valid(text));
    if (utf8::is_valid(bytes) && iter % 2 == 1) {
      ASSERT_EQ(tok.encode(text, false), ids);
    }
    std::vector<int32_t> random_ids(rng() % 16);
    for (auto& id : random_ids) id = static_cast<int32_t>(rng() % (tok.vocab_size() + 10)) - 5;
    check_stream(tok, random_ids, iter % 3 == 0);
  }
}

TEST_P(TokenizerStream, ConcurrentEncodeMatchesSerial) {
  const Tokenizer& tok = tokenizer(GetParam());
  auto golden = read_json("tokenizers/goldens/" + GetParam() + "_cases.json");
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> expected;
  for (const auto& c : golden["cases"]) {
    texts.push_back(c["text"]);
    expected.push_back(c["ids"].get<std::vector<int32_t>>());
  }
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < texts.size() * 2; i += 4)
        if (tok.encode(texts[i % texts.size()]) != expected[i % texts.size()]) ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerStream, ::testing::Values("qwen3", "deepseek_v3"));

TEST(TokenizerUtf8, LossyMatchesMaximalSubpartRule) {
  // Examples from the Unicode standard (table 3-8) and edge cases.
  EXPECT_EQ(utf8::to_valid_lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD" "d");
  EXPECT_EQ(utf8::to_valid_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8::to_valid_lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");                          // cut emoji
  EXPECT_EQ(utf8::to_valid_lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
}

TEST(TokenizerStreamUnit, HoldsBackSplitCharacter) {
  const Tokenizer& tok = tokenizer("qwen3");
  // "😀" is 4 bytes; byte-level tokens for each byte split it.
  // The byte-level vocab entries of its bytes F0 9F 98 80.
  std::vector<int32_t> ids;
  for (const char* t : {"ð", "Ł", "ĺ", "Ģ"}) ids.push_back(*tok.token_to_id(t));
  IncrementalDetokenizer inc(tok);
  EXPECT_EQ(inc.push(ids[0]), "");
  EXPECT_EQ(inc.push(ids[1]), "");
  EXPECT_EQ(inc.push(ids[2]), "");
  EXPECT_EQ(inc.pending_bytes(), 3u);
  EXPECT_EQ(inc.push(ids[3]), "\xF0\x9F\x98\x80");
  EXPECT_EQ(inc.push(ids[0]), "");
  EXPECT_EQ(inc.flush(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace sparrow
