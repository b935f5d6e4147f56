#include "sparrow/core/arena.h"

#include <algorithm>

namespace sparrow {

void* Arena::alloc_bytes(size_t nbytes) {
  const size_t aligned = (nbytes + 63) / 64 * 64;
  if (used_ + aligned > block_.nbytes())
    throw_error("workspace arena exhausted: step needs {} more bytes, capacity {} (used {})",
                aligned, block_.nbytes(), used_);
  void* p = static_cast<char*>(block_.data()) + used_;
  used_ += aligned;
  high_water_ = std::max(high_water_, used_);
  return p;
}

}  // namespace sparrow
