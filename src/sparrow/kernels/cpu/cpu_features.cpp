#include "sparrow/kernels/cpu/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "sparrow/core/error.h"
#include "sparrow/core/log.h"

namespace sparrow::cpu {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bf16");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx512 && avx2) return Isa::kAvx512;
  if (avx2) return Isa::kAvx2;
#endif
  return Isa::kReference;
}

Isa from_env() {
  const Isa best = detected_isa();
  const char* env = std::getenv("SPARROW_CPU_ISA");
  if (!env || !*env) return best;
  Isa want;
  try {
    want = parse_isa(env);
  } catch (const InputError&) {
    log(LogLevel::kWarn, "ignoring SPARROW_CPU_ISA={}: expected avx512, avx2 or reference", env);
    return best;
  }
  if (int(want) > int(best))
    log(LogLevel::kWarn, "SPARROW_CPU_ISA={} is not supported here; using {}", env, isa_name(best));
  return Isa(std::min(int(want), int(best)));
}

constexpr int kNoOverride = -1;
std::atomic<int> g_override{kNoOverride};

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kReference: return "reference";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

Isa parse_isa(std::string_view name) {
  if (name == "avx512") return Isa::kAvx512;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "reference" || name == "ref" || name == "scalar") return Isa::kReference;
  throw_input_error("unknown CPU ISA '{}' (expected avx512, avx2 or reference)", name);
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

bool isa_supported(Isa isa) { return int(isa) <= int(detected_isa()); }

Isa active_isa() {
  const int o = g_override.load(std::memory_order_relaxed);
  if (o != kNoOverride) return Isa(o);
  static const Isa env_isa = from_env();
  return env_isa;
}

void set_isa(Isa isa) {
  g_override.store(std::min(int(isa), int(detected_isa())), std::memory_order_relaxed);
}

void reset_isa() { g_override.store(kNoOverride, std::memory_order_relaxed); }

}  // namespace sparrow::cpu
