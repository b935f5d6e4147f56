#include "sparrow/core/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace sparrow {
namespace {
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total > 0 ? total : 1), enabled_(enabled), tty_(isatty(STDERR_FILENO)), start_s_(now_s()) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && done_ < total_) draw(true);
}

void ProgressBar::advance(int64_t n) {
  done_ += n;
  if (enabled_) draw(done_ >= total_);
}

void ProgressBar::draw(bool final) {
  const int width = 30;
  const int filled = int(width * done_ / total_);
  const int decile = int(10 * done_ / total_);
  if (!tty_ && decile == last_decile_ && !final) return;
  last_decile_ = decile;
  std::string bar(size_t(filled), '#');
  bar.resize(size_t(width), ' ');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld (%.1f s)%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(), (long long)done_,
               (long long)total_, now_s() - start_s_, tty_ && !final ? "" : "\n");
  std::fflush(stderr);
}

}  // namespace sparrow
