// Run-time CPU feature detection and the ISA level the CPU kernels dispatch on.
//
// The level is the best the processor supports, unless SPARROW_CPU_ISA (avx512 | avx2 |
// reference) asks for a lower one (tests and benchmarks use it to exercise every path).
// A request above what the processor supports is clamped to the best supported level.
// Code compiled for an ISA lives only in files named *_avx512.cpp / *_avx2.cpp and is
// reached through this dispatch.
#pragma once

#include <string_view>

namespace sparrow::cpu {

enum class Isa : int { kReference = 0, kAvx2 = 1, kAvx512 = 2 };

std::string_view isa_name(Isa isa);
// Parses "avx512" / "avx2" / "reference" (also "ref", "scalar"); throws InputError.
Isa parse_isa(std::string_view name);

// Best level this processor (and OS) supports: kAvx512 needs AVX-512 F/BW/VL/DQ + BF16,
// kAvx2 needs AVX2 + FMA + F16C.
Isa detected_isa();
bool isa_supported(Isa isa);

// The level the kernels use now: set_isa() if called, else SPARROW_CPU_ISA, else
// detected_isa(); always clamped to detected_isa().
Isa active_isa();
// Overrides the active level (clamped); for tests and benchmarks. Not thread-safe with
// respect to concurrently running kernels.
void set_isa(Isa isa);
// Drops the override set by set_isa (back to SPARROW_CPU_ISA / detection).
void reset_isa();

}  // namespace sparrow::cpu
