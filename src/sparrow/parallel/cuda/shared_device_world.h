// SharedDeviceWorld: several ranks on ONE GPU, as threads of one process, for testing the
// multi-GPU model layouts where a machine has a single GPU (NCCL refuses two ranks on one
// device). Like NcclCommunicator every pointer is a DEVICE pointer and work goes on the
// calling thread's current stream; like InProcessWorld the ranks meet at host barriers and
// read each other's buffers directly (device-to-device copies on the reader's stream), and
// reductions sum in the Communicator's rank-order tree (kernels/cuda/rank_tree_sum.h), so results
// are the exact-order NCCL bits. Each collective synchronizes its stream: not for CUDA
// graph capture, and slow; a test backend, never a serving one.
#pragma once

#include <memory>
#include <span>

#include "sparrow/parallel/communicator.h"

namespace sparrow {

class SharedDeviceWorld final : public CommWorld {
 public:
  // `size` ranks on the current device; each communicator gets `scratch_bytes` of device
  // scratch (an all_reduce of n floats needs size * n * 4 bytes).
  explicit SharedDeviceWorld(int size, size_t scratch_bytes = size_t(64) << 20);
  ~SharedDeviceWorld() override;
  int size() const override;
  std::unique_ptr<Communicator> communicator(int rank) override;
  // Called by every member of the group (as InProcessWorld::group).
  std::unique_ptr<Communicator> group(std::span<const int> ranks, int rank) override;
  uint64_t bytes_moved() const override;

  struct Group;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sparrow
