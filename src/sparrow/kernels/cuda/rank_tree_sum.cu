#include "sparrow/kernels/cuda/rank_tree_sum.h"

#include <algorithm>
#include <cstdint>

namespace sparrow::cuda::k {
namespace {

// Small groups (the usual TP / EP sizes): the tree fully unrolled, values in registers.
// The loop is the array form of the tree: at width w, slot k (a multiple of 2w) absorbs
// slot k + w when it exists.
template <int G>
__global__ void tree_sum_fixed(const float* __restrict__ src, size_t stride, float* __restrict__ dst, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float v[G];
#pragma unroll
    for (int b = 0; b < G; ++b) v[b] = src[size_t(b) * stride + i];
#pragma unroll
    for (int w = 1; w < G; w *= 2)
#pragma unroll
      for (int k = 0; k + w < G; k += 2 * w) v[k] = v[k] + v[k + w];
    dst[i] = v[0];
  }
}

// Any group size: the same tree built left to right with a stack of complete subtrees.
// Each new block is pushed, and while the two top subtrees have the same size they merge
// (left + right); at the end the remaining subtrees merge from the right. This performs
// exactly the additions of the array form (checked for every size up to 300), with
// log2(blocks) + 1 live values instead of `blocks`.
__global__ void tree_sum_any(const float* __restrict__ src, size_t stride, int blocks, float* __restrict__ dst, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float val[32];
    int size[32];
    int top = 0;
    for (int b = 0; b < blocks; ++b) {
      val[top] = src[size_t(b) * stride + i];
      size[top] = 1;
      ++top;
      while (top >= 2 && size[top - 1] == size[top - 2]) {
        val[top - 2] = val[top - 2] + val[top - 1];
        size[top - 2] *= 2;
        --top;
      }
    }
    while (top >= 2) {
      val[top - 2] = val[top - 2] + val[top - 1];
      --top;
    }
    dst[i] = val[0];
  }
}

}  // namespace

void rank_tree_sum(const float* src, size_t stride, int blocks, float* dst, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  // Grid-stride loop; a few waves of blocks are plenty for a memory-bound sum.
  const unsigned grid = unsigned(std::min<size_t>((n + kThreads - 1) / kThreads, 4096));
  switch (blocks) {
    case 1: tree_sum_fixed<1><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 2: tree_sum_fixed<2><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 3: tree_sum_fixed<3><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 4: tree_sum_fixed<4><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 5: tree_sum_fixed<5><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 6: tree_sum_fixed<6><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 7: tree_sum_fixed<7><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    case 8: tree_sum_fixed<8><<<grid, kThreads, 0, stream>>>(src, stride, dst, n); break;
    default: tree_sum_any<<<grid, kThreads, 0, stream>>>(src, stride, blocks, dst, n); break;
  }
}

}  // namespace sparrow::cuda::k
