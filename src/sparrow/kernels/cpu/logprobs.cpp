#include "sparrow/kernels/logprobs.h"

#include <algorithm>

namespace sparrow {

std::vector<TokenLogprob> top_n(const float* row, int64_t vocab, int n) {
  n = int(std::min<int64_t>(n, vocab));
  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) idx[size_t(i)] = int32_t(i);
  auto better = [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), better);
  std::vector<TokenLogprob> out;
  out.reserve(size_t(n));
  for (int i = 0; i < n; ++i) out.push_back({row[idx[size_t(i)]], idx[size_t(i)]});
  return out;
}

}  // namespace sparrow
