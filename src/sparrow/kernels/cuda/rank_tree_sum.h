// The fixed binary tree over gathered fp32 blocks ((b0 + b1) + (b2 + b3), then pairs of
// pairs; a trailing odd block joins at the end, as tree_sum in inprocess_communicator.cpp):
// the reduction of the exact-order collectives (NCCL and shared-device backends: blocks are
// ranks) and of the deterministic leaf tree (ops::linear_leaves, the MoE slot values:
// blocks are leaves). Plain fp32 adds, nothing the compiler may contract or reorder, so
// every rank gets the same bits as the in-process backend. Kept free of fmt and NCCL
// headers (compiled by nvcc).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace sparrow::cuda::k {

// dst[i] = tree sum over b in [0, blocks) of src[b * stride + i], for i < n (n <= stride).
// dst must not overlap src. Enqueued on `stream`; nothing is launched when n == 0.
void rank_tree_sum(const float* src, size_t stride, int blocks, float* dst, size_t n, cudaStream_t stream);

}  // namespace sparrow::cuda::k
