#include "sparrow/engine/stop_checker.h"

#include <algorithm>

namespace sparrow {
namespace {

// Largest n <= limit such that text[0, n) ends on a UTF-8 character boundary.
size_t char_boundary(const std::string& text, size_t limit) {
  while (limit > 0 && limit < text.size() && (static_cast<unsigned char>(text[limit]) & 0xC0) == 0x80) --limit;
  return limit;
}

}  // namespace

StopChecker::StopChecker(const Tokenizer& tokenizer, std::vector<std::string> stops, bool skip_special_tokens)
    : detok_(tokenizer, skip_special_tokens), stops_(std::move(stops)) {
  for (const auto& s : stops_) max_stop_ = std::max(max_stop_, s.size());
}

bool StopChecker::push(int32_t id, bool hidden) {
  if (matched_ || hidden) return false;
  const size_t before = text_.size();
  text_ += detok_.push(id);
  if (stops_.empty() || text_.size() == before) return false;
  // A new match must end inside the new text; start early enough to see it whole.
  const size_t from = before >= max_stop_ ? before - max_stop_ + 1 : 0;
  size_t best = std::string::npos;
  for (const auto& s : stops_) {
    const size_t p = text_.find(s, from);
    if (p != std::string::npos && p < best) {
      best = p;
      matched_ = s;
    }
  }
  if (best == std::string::npos) return false;
  text_.resize(best);
  sent_ = std::min(sent_, text_.size());
  return true;
}

std::string StopChecker::take_text(bool final) {
  if (final && !matched_) text_ += detok_.flush();
  size_t end = text_.size();
  if (!final && !matched_ && max_stop_ > 1) end = char_boundary(text_, end >= max_stop_ - 1 ? end - (max_stop_ - 1) : 0);
  if (end <= sent_) return {};
  std::string out = text_.substr(sent_, end - sent_);
  sent_ = end;
  return out;
}

}  // namespace sparrow
