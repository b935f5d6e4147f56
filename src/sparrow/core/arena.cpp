#include "sparrow/core/arena.h"

#include <algorithm>

namespace sparrow {

void* Arena::alloc_bytes(size_t nbytes) {
  const size_t align = device_ == Device::kCPU ? 64 : 256;
  const size_t aligned = (nbytes + align - 1) / align * align;
  if (used_ + aligned > capacity_)
    throw_error("{} arena exhausted: needs {} more bytes, capacity {} (used {}, high water {})", name_, aligned,
                capacity_, used_, high_water_);
  void* p = base_ + used_;
  used_ += aligned;
  high_water_ = std::max(high_water_, used_);
  return p;
}

}  // namespace sparrow
