// A progress bar on stderr for long start-up work (loading weights). On a terminal it
// redraws one line; otherwise it prints a line at every 10%, so logs stay readable.
#pragma once

#include <cstdint>
#include <string>

namespace sparrow {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();
  void advance(int64_t n = 1);

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_;
  int last_decile_ = -1;
  double start_s_;
};

}  // namespace sparrow
