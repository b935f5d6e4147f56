// Decisions are made left to right exactly as utf8::to_valid_lossy makes them; the only
// difference is that an ill-formed-looking tail that more bytes could still complete is kept
// for the next push. Because the lossy rule at a position only looks at the bytes of one
// (maximal) sequence, deciding early on complete evidence gives the same result as deciding
// on the whole string.
#include "sparrow/tokenizer/incremental_detokenizer.h"

#include "sparrow/tokenizer/tokenizer.h"
#include "sparrow/tokenizer/utf8.h"

namespace sparrow {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  pending_.append(tokenizer_.token_bytes(id, skip_special_));
  return drain();
}

std::string IncrementalDetokenizer::push(std::span<const int32_t> ids) {
  for (int32_t id : ids) pending_.append(tokenizer_.token_bytes(id, skip_special_));
  return drain();
}

std::string IncrementalDetokenizer::drain() {
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    if (static_cast<unsigned char>(pending_[i]) < 0x80) {
      out.push_back(pending_[i++]);
      continue;
    }
    if (size_t n = utf8::valid_sequence_length(pending_, i)) {
      out.append(pending_, i, n);
      i += n;
    } else if (utf8::is_incomplete_tail(pending_, i)) {
      break;
    } else {
      out.append("\xEF\xBF\xBD");
      i += utf8::maximal_subpart_length(pending_, i);
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string out = utf8::to_valid_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace sparrow
