// The reduction kernel of the NCCL backend's exact-order collectives: every rank's
// contribution has been gathered into one buffer, and this sums them in the Communicator's
// fixed tree in rank order ((r0 + r1) + (r2 + r3), then pairs of pairs; a trailing odd
// block joins at the end, as tree_sum in inprocess_communicator.cpp). Plain fp32 adds,
// nothing the compiler may contract or reorder, so every rank gets the same bits as the
// in-process backend. Kept free of fmt and NCCL headers (compiled by nvcc).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace sparrow::cuda::k {

// dst[i] = tree sum over b in [0, blocks) of src[b * stride + i], for i < n (n <= stride).
// dst must not overlap src. Enqueued on `stream`; nothing is launched when n == 0.
void rank_tree_sum(const float* src, size_t stride, int blocks, float* dst, size_t n, cudaStream_t stream);

}  // namespace sparrow::cuda::k
