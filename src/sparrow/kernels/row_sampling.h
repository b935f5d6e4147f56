// RowSampling: what ops::sample_rows needs to choose one logits row's token, the last stage
// of the engine's Sampler (after its penalties and masks). Plain data, shared by the CPU
// and CUDA implementations (kernels/cpu/sampling.cpp, kernels/cuda/sampling.cu).
#pragma once

#include <cstdint>

namespace sparrow {

struct RowSampling {
  float temperature = 0.f;  // 0: greedy (the row's argmax, ties to the lower id)
  int32_t top_k = -1;       // <= 0: the whole vocabulary
  float top_p = 1.f;        // in (0, 1]
  float min_p = 0.f;        // in [0, 1]
  uint64_t seed = 0;        // keyed_uniform(seed, position, token id) is token id's noise
  int64_t position = 0;     // absolute position of the token being chosen
};

}  // namespace sparrow
