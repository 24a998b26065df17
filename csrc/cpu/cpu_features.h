// What the CPU kernels may use: x86 SIMD paths are compiled through target attributes (the
// extension itself is built without -mavx2, so it loads on any x86-64 CPU) and chosen at run
// time with has_avx2_fma_f16c().
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FCX_X86_SIMD 1
#include <immintrin.h>
// A function compiled for AVX2 + FMA + F16C; call it only when has_avx2_fma_f16c().
#define FCX_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define FCX_X86_SIMD 0
#endif

namespace fastcore_ext {
namespace cpu {

// True when this CPU runs AVX2, FMA and F16C instructions (read once).
inline bool has_avx2_fma_f16c() {
#if FCX_X86_SIMD
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("f16c");
  return ok;
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace fastcore_ext
