// libFuzzer target for the tokenizer. The first input byte picks what the rest is:
//   0..3  text for encode (parse_special on/off) -> ids in range, decode valid UTF-8, and
//         for valid UTF-8 input, re-encoding the decode gives the same ids without specials
//   4..7  little-endian int32 ids for decode / incremental decode: valid UTF-8 chunks whose
//         concatenation equals the full decode
//   8..9  a chat template source: parse and render must either work or throw InputError
// Build: cmake -S . -B build-fuzz -DSPARROW_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ && cmake
// --build build-fuzz --target tokenizer_fuzz; run: build-fuzz/fuzz/tokenizer_fuzz -max_total_time=60
// SPARROW_FUZZ_TOKENIZER=DIR picks the tokenizer (default: the Qwen3 test data).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "sparrow/core/error.h"
#include "sparrow/tokenizer/chat_template.h"
#include "sparrow/tokenizer/incremental_detokenizer.h"
#include "sparrow/tokenizer/tokenizer.h"
#include "sparrow/tokenizer/utf8.h"

namespace {

const sparrow::Tokenizer& tok() {
  static std::unique_ptr<sparrow::Tokenizer> t = [] {
    const char* dir = std::getenv("SPARROW_FUZZ_TOKENIZER");
    return sparrow::Tokenizer::from_dir(dir ? dir : SPARROW_TESTDATA_DIR "/tokenizers/qwen3");
  }();
  return *t;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const sparrow::Tokenizer& t = tok();
  uint8_t mode = data[0] % 10;
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode < 4) {
    auto ids = t.encode(body, mode % 2 == 0);
    for (int32_t id : ids) check(id >= 0 && id < t.vocab_size(), "id out of range");
    std::string text = t.decode(ids);
    check(sparrow::utf8::is_valid(text), "decode produced invalid UTF-8");
    if (mode % 2 == 1 && sparrow::utf8::is_valid(body)) check(t.encode(text, false) == ids, "encode/decode round trip");
  } else if (mode < 8) {
    std::vector<int32_t> ids(body.size() / 4);
    if (!ids.empty()) std::memcpy(ids.data(), body.data(), ids.size() * 4);
    for (auto& id : ids) id = static_cast<int32_t>(static_cast<uint32_t>(id) % (t.vocab_size() + 16)) - 8;
    bool skip = mode % 2 == 0;
    std::string full = t.decode(ids, skip);
    check(sparrow::utf8::is_valid(full), "decode produced invalid UTF-8");
    sparrow::IncrementalDetokenizer inc(t, skip);
    std::string streamed;
    for (int32_t id : ids) {
      std::string chunk = inc.push(id);
      check(sparrow::utf8::is_valid(chunk), "stream chunk is invalid UTF-8");
      streamed += chunk;
    }
    streamed += inc.flush();
    check(streamed == full, "stream differs from full decode");
  } else {
    try {
      auto msgs = nlohmann::ordered_json::parse(R"([{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}])");
      std::string out = sparrow::render_chat_template(body, msgs, nullptr, true);
      (void)out;
    } catch (const sparrow::InputError&) {
    }
  }
  return 0;
}
