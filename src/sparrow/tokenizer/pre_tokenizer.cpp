// Each Split step refines the pieces produced by the previous step, exactly as HF applies a
// Sequence of pre-tokenizers: a regex never sees across a boundary made earlier. With
// behaviour Isolated, both the matches and the gaps between them become pieces.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "sparrow/tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include "sparrow/core/error.h"

namespace sparrow {

namespace {

// The GPT-2 pattern HF's ByteLevel pre-tokenizer applies when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Per-thread PCRE2 match state: match data (one pair is all we read) and a JIT stack large
// enough for long inputs (a 100 KB run of spaces under \s+(?!\S)).
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchState() {
    data = pcre2_match_data_create(1, nullptr);
    ctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
    pcre2_match_data_free(data);
  }
};
thread_local MatchState t_match;

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                             &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw_input_error("tokenizer.json: cannot compile regex at offset {}: {}: {}", off, reinterpret_cast<char*>(msg),
                      pattern);
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::find(std::string_view subject, size_t start, size_t& begin, size_t& end) const {
  auto* code = static_cast<pcre2_code*>(code_);
  MatchState& st = t_match;
  auto subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc = jit_ ? pcre2_jit_match(code, subj, subject.size(), start, 0, st.data, st.ctx)
                : pcre2_match(code, subj, subject.size(), start, PCRE2_NO_UTF_CHECK, st.data, st.ctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  SPARROW_CHECK(rc >= 0, "pcre2 match failed with code {}", rc);
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
  begin = ov[0];
  end = ov[1];
  return true;
}

PreTokenizer::PreTokenizer(const nlohmann::json& spec) {
  if (!spec.is_null()) add(spec);
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add(const nlohmann::json& spec) {
  std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : spec.at("pretokenizers")) add(p);
  } else if (type == "Split") {
    SPARROW_REQUIRE(!spec.value("invert", false), "tokenizer.json: Split with invert=true is not supported");
    const auto& pat = spec.at("pattern");
    std::string regex = pat.contains("Regex") ? pat.at("Regex").get<std::string>()
                                              : escape_literal(pat.at("String").get<std::string>());
    std::string b = spec.value("behavior", "Isolated");
    Step::Behavior behavior;
    if (b == "Isolated") {
      behavior = Step::Behavior::kIsolated;
    } else if (b == "Removed") {
      behavior = Step::Behavior::kRemoved;
    } else if (b == "MergedWithPrevious") {
      behavior = Step::Behavior::kMergedWithPrevious;
    } else if (b == "MergedWithNext") {
      behavior = Step::Behavior::kMergedWithNext;
    } else {
      throw_input_error("tokenizer.json: Split behavior '{}' is not supported", b);
    }
    steps_.push_back(Step{std::make_unique<Regex>(regex), behavior});
  } else if (type == "ByteLevel") {
    // The byte mapping itself happens in the BPE model; only the optional regex splits here.
    SPARROW_REQUIRE(!spec.value("add_prefix_space", false),
                    "tokenizer.json: ByteLevel pre-tokenizer with add_prefix_space=true is not supported");
    if (spec.value("use_regex", true)) steps_.push_back(Step{std::make_unique<Regex>(kGpt2Pattern), Step::Behavior::kIsolated});
  } else {
    throw_input_error("tokenizer.json: pre-tokenizer type '{}' is not supported", type);
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  out.clear();
  if (text.empty()) return;
  out.push_back(text);
  std::vector<std::string_view> next;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : out) {
      size_t pos = 0, b = 0, e = 0;
      size_t pending_from = 0;  // for MergedWithNext: where the piece being built starts
      while (pos <= piece.size() && step.regex->find(piece, pos, b, e)) {
        if (e == b) {  // empty match: HF skips it; step one code point on
          if (b >= piece.size()) break;
          pos = b + 1;
          while (pos < piece.size() && (static_cast<unsigned char>(piece[pos]) & 0xC0) == 0x80) ++pos;
          continue;
        }
        switch (step.behavior) {
          case Step::Behavior::kIsolated:
            if (b > pending_from) next.push_back(piece.substr(pending_from, b - pending_from));
            next.push_back(piece.substr(b, e - b));
            pending_from = e;
            break;
          case Step::Behavior::kRemoved:
            if (b > pending_from) next.push_back(piece.substr(pending_from, b - pending_from));
            pending_from = e;
            break;
          case Step::Behavior::kMergedWithPrevious:
            // the match joins the gap before it
            next.push_back(piece.substr(pending_from, e - pending_from));
            pending_from = e;
            break;
          case Step::Behavior::kMergedWithNext:
            // the gap before the match is its own piece; the match starts the next one
            if (b > pending_from) next.push_back(piece.substr(pending_from, b - pending_from));
            pending_from = b;
            break;
        }
        pos = e;
      }
      if (pending_from < piece.size()) next.push_back(piece.substr(pending_from));
    }
    out.swap(next);
  }
}

}  // namespace sparrow
