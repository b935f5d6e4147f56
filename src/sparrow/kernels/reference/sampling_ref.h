// The plain definition of ops::sample_rows for one row: sort the whole vocabulary, cut,
// Gumbel-max. The oracle the CPU sampler (which sorts only what it needs and skips
// hopeless tokens' noise) and, through it, the GPU sampler are held to.
#pragma once

#include <cstdint>

#include "sparrow/kernels/row_sampling.h"

namespace sparrow::ref {

int32_t sample_row(const float* logits, int64_t vocab, const RowSampling& p);

}  // namespace sparrow::ref
