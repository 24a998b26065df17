// Kernel 1 on the CPU: the two instruction sets the row kernel (augment_normalize_rows.h) is
// compiled for. Both expose the same names; every operation is one IEEE operation with the same
// rounding in both (fma is fused in both, min/max follow the x86 rule "a OP b ? a : b", so a
// NaN in `a` yields `b`), so the two paths give bit-identical results and the tests compare
// them with torch.equal.
//
// ScalarOps: one pixel at a time, plain C++ (any CPU; std::fma is a libm call where the
// compiler may not emit an fma instruction, correct but slow: this path is the fallback).
// Avx2Ops: 8 pixels at a time with AVX2 + FMA + F16C, compiled through a target attribute
// (the extension is built without -mavx2) and chosen at run time.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/cpu_features.h"

namespace fastcore_ext {
namespace augment {
namespace cpu {

// Where the bytes of one sample are: the row kernel reads uint8 pixels through these.
struct SampleSource {
  const uint8_t* base;  // images[b]
  int64_t sH, sW, sC;   // strides in bytes (= elements)
  int64_t lim8;         // AVX2 path: an 8-byte read at base + o is in bounds for o <= lim8
  const void* masks;    // AVX2 path: the byte-shuffle masks of the load layout (per call)
};

// How the AVX2 path reads the taps of 8 pixels of one input row: as one 8-byte word per pixel
// at the pixel's (left tap's) offset o, taking the channel bytes out of the words with byte
// shuffles. Fixed per call from the strides; the portable path reads bytes one by one.
enum class Load : int {
  Word1 = 0,           // every (channel, tap) byte within the word at o (channels_last RGB,
                       // or gray): byte c sC + t sW
  WordPerChannel = 1,  // one word per channel at o + c sC, taps at bytes 0 and sW (NCHW RGB)
  WordPerTap = 2,      // one word per channel and tap, at o_t + c sC, byte 0 (any strides)
};

struct ScalarOps {
  static constexpr int kWidth = 1;
  using F = float;
  using M = bool;
  using I32 = int32_t;
  using Idx = int64_t;

  static F set1(float x) { return x; }
  static F iota() { return 0.0f; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  static F fmadd(F a, F b, F c) { return std::fma(a, b, c); }    // a b + c
  static F fnmadd(F a, F b, F c) { return std::fma(-a, b, c); }  // c - a b
  static F floor(F a) { return std::floor(a); }
  static F round_even(F a) { return std::nearbyint(a); }
  static F max(F a, F b) { return a > b ? a : b; }
  static F min(F a, F b) { return a < b ? a : b; }
  static F abs(F a) { return std::fabs(a); }
  static M ge(F a, F b) { return a >= b; }
  static M le(F a, F b) { return a <= b; }
  static M lt(F a, F b) { return a < b; }
  static M mand(M a, M b) { return a && b; }
  static F select(M m, F a, F b) { return m ? a : b; }
  static F zero_unless(M m, F a) { return m ? a : 0.0f; }

  static I32 bits(F a) {
    I32 r;
    std::memcpy(&r, &a, sizeof r);
    return r;
  }
  static F from_bits(I32 a) {
    F r;
    std::memcpy(&r, &a, sizeof r);
    return r;
  }
  static I32 iset1(int32_t x) { return x; }
  static I32 iadd(I32 a, I32 b) { return int32_t(uint32_t(a) + uint32_t(b)); }
  static I32 isub(I32 a, I32 b) { return int32_t(uint32_t(a) - uint32_t(b)); }
  static I32 iand(I32 a, I32 b) { return a & b; }
  static I32 ior(I32 a, I32 b) { return a | b; }
  template <int n>
  static I32 srl(I32 a) {
    return int32_t(uint32_t(a) >> n);
  }
  template <int n>
  static I32 sll(I32 a) {
    return int32_t(uint32_t(a) << n);
  }
  template <int n>
  static I32 sra(I32 a) {
    return a >> n;  // arithmetic (C++20; what every supported compiler does before)
  }
  static F to_float(I32 a) { return float(a); }
  static I32 to_int(F a) { return int32_t(a); }  // a integral and within int32

  // Byte offset of pixel (x, y); x, y integral and inside the image.
  static Idx offset(const SampleSource& s, F x, F y) {
    return int64_t(y) * s.sH + int64_t(x) * s.sW;
  }

  // Offsets of one vector of pixels, in memory (see load_row2).
  using IdxMem = int64_t;
  static void store_idx(IdxMem* p, Idx v) { *p = v; }

  // Bilinear: the values (0..255) of the taps at offsets oa[k] (left) and ob[k] (right) of one
  // input row, v[2 c + t] for channel c and tap t. The AVX2 path's word loads read the right
  // tap next to oa and ignore ob, except in the WordPerTap layout.
  template <Load L, int C, bool Safe>
  static void load_row2(const SampleSource& s, const IdxMem* oa, const IdxMem* ob, F* v) {
    for (int c = 0; c < C; ++c) {
      v[2 * c] = float(s.base[*oa + c * s.sC]);
      v[2 * c + 1] = float(s.base[*ob + c * s.sC]);
    }
  }
  // Nearest: the C channel values of the pixel at offset o.
  template <Load L, int C, bool Safe>
  static void load_row1(const SampleSource& s, Idx o, F* v) {
    for (int c = 0; c < C; ++c) v[c] = float(s.base[o + c * s.sC]);
  }

  static void store(F* dst, F v) { *dst = v; }
  static F load_f(const F* src) { return *src; }
  // Write the first n (<= kWidth) lanes.
  static void store_out(float* dst, F v, int) { *dst = v; }
  static void store_out(c10::Half* dst, F v, int) { *dst = c10::Half(v); }
  static void store_out(c10::BFloat16* dst, F v, int) { *dst = c10::BFloat16(v); }
  // Three channel vectors -> 3 kWidth values in pixel-major order (a0 b0 c0 a1 b1 c1 ...).
  static void interleave3(F&, F&, F&) {}
};

#if FCX_X86_SIMD
#define FCX_AVX2_TARGET FCX_TARGET_AVX2 __attribute__((always_inline)) inline

// Int32 offsets: used only when every in-sample offset fits (checked by the caller).
struct Avx2Ops {
  static constexpr int kWidth = 8;
  using F = __m256;
  using M = __m256;
  using I32 = __m256i;
  using Idx = __m256i;

  FCX_AVX2_TARGET static F set1(float x) { return _mm256_set1_ps(x); }
  FCX_AVX2_TARGET static F iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
  FCX_AVX2_TARGET static F add(F a, F b) { return _mm256_add_ps(a, b); }
  FCX_AVX2_TARGET static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  FCX_AVX2_TARGET static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  FCX_AVX2_TARGET static F div(F a, F b) { return _mm256_div_ps(a, b); }
  FCX_AVX2_TARGET static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  FCX_AVX2_TARGET static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  FCX_AVX2_TARGET static F floor(F a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  FCX_AVX2_TARGET static F round_even(F a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  FCX_AVX2_TARGET static F max(F a, F b) { return _mm256_max_ps(a, b); }
  FCX_AVX2_TARGET static F min(F a, F b) { return _mm256_min_ps(a, b); }
  FCX_AVX2_TARGET static F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  FCX_AVX2_TARGET static M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  FCX_AVX2_TARGET static M le(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  FCX_AVX2_TARGET static M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  FCX_AVX2_TARGET static M mand(M a, M b) { return _mm256_and_ps(a, b); }
  FCX_AVX2_TARGET static F select(M m, F a, F b) { return _mm256_blendv_ps(b, a, m); }
  FCX_AVX2_TARGET static F zero_unless(M m, F a) { return _mm256_and_ps(m, a); }

  FCX_AVX2_TARGET static I32 bits(F a) { return _mm256_castps_si256(a); }
  FCX_AVX2_TARGET static F from_bits(I32 a) { return _mm256_castsi256_ps(a); }
  FCX_AVX2_TARGET static I32 iset1(int32_t x) { return _mm256_set1_epi32(x); }
  FCX_AVX2_TARGET static I32 iadd(I32 a, I32 b) { return _mm256_add_epi32(a, b); }
  FCX_AVX2_TARGET static I32 isub(I32 a, I32 b) { return _mm256_sub_epi32(a, b); }
  FCX_AVX2_TARGET static I32 iand(I32 a, I32 b) { return _mm256_and_si256(a, b); }
  FCX_AVX2_TARGET static I32 ior(I32 a, I32 b) { return _mm256_or_si256(a, b); }
  template <int n>
  FCX_AVX2_TARGET static I32 srl(I32 a) {
    return _mm256_srli_epi32(a, n);
  }
  template <int n>
  FCX_AVX2_TARGET static I32 sll(I32 a) {
    return _mm256_slli_epi32(a, n);
  }
  template <int n>
  FCX_AVX2_TARGET static I32 sra(I32 a) {
    return _mm256_srai_epi32(a, n);
  }
  FCX_AVX2_TARGET static F to_float(I32 a) { return _mm256_cvtepi32_ps(a); }
  FCX_AVX2_TARGET static I32 to_int(F a) { return _mm256_cvttps_epi32(a); }

  FCX_AVX2_TARGET static Idx offset(const SampleSource& s, F x, F y) {
    return _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvttps_epi32(y), iset1(int32_t(s.sH))),
                            _mm256_mullo_epi32(_mm256_cvttps_epi32(x), iset1(int32_t(s.sW))));
  }

  // The 8-byte words at base + o[k] + d of 8 pixels, as a = [w0 w1 | w4 w5] and
  // b = [w2 w3 | w6 w7] (128-bit halves): the layout bytes2 turns into pixel order.
  struct Words {
    __m256i a, b;
  };

  // Safe: the sample ends at least 8 bytes before the end of images, so every word read is
  // in bounds. Otherwise a word that would pass the end is read lower, at lim8, and shifted
  // back (the bytes past the end, which no used tap needs, read as 0).
  template <bool Safe>
  FCX_AVX2_TARGET static __m128i words2(const SampleSource& s, int64_t o0, int64_t o1) {
    if constexpr (Safe) {
      const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s.base + o0));
      return _mm_castpd_si128(
          _mm_loadh_pd(_mm_castsi128_pd(lo), reinterpret_cast<const double*>(s.base + o1)));
    } else {
      const int64_t a0 = std::min(o0, s.lim8), a1 = std::min(o1, s.lim8);
      uint64_t w0, w1;
      std::memcpy(&w0, s.base + a0, 8);
      std::memcpy(&w1, s.base + a1, 8);
      return _mm_set_epi64x(int64_t(w1 >> (8 * (o1 - a1))), int64_t(w0 >> (8 * (o0 - a0))));
    }
  }

  template <bool Safe>
  FCX_AVX2_TARGET static Words words(const SampleSource& s, const int32_t* o, int64_t d) {
    const __m128i w01 = words2<Safe>(s, o[0] + d, o[1] + d);
    const __m128i w23 = words2<Safe>(s, o[2] + d, o[3] + d);
    const __m128i w45 = words2<Safe>(s, o[4] + d, o[5] + d);
    const __m128i w67 = words2<Safe>(s, o[6] + d, o[7] + d);
    return Words{_mm256_inserti128_si256(_mm256_castsi128_si256(w01), w45, 1),
                 _mm256_inserti128_si256(_mm256_castsi128_si256(w23), w67, 1)};
  }

  // Bytes k1 and k2 of the 8 words, zero-extended, in pixel order. `mask` (from shuffle_mask)
  // moves byte k1 of word 2m + q of each 128-bit half to dword q and byte k2 to dword 2 + q;
  // unpacking the 64-bit halves of the two shuffled vectors then gives pixels 0..7 in order.
  FCX_AVX2_TARGET static void bytes2(const Words& w, const void* mask, F& v1, F& v2) {
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mask));
    const __m256i sa = _mm256_shuffle_epi8(w.a, m), sb = _mm256_shuffle_epi8(w.b, m);
    v1 = to_float(_mm256_unpacklo_epi64(sa, sb));
    v2 = to_float(_mm256_unpackhi_epi64(sa, sb));
  }

  // The 32-byte shuffle mask taking bytes k1 and k2 (0..7) of each word (see bytes2).
  static void shuffle_mask(int k1, int k2, int8_t* mask) {
    for (int half = 0; half < 2; ++half) {
      int8_t* m = mask + 16 * half;
      for (int i = 0; i < 16; ++i) m[i] = -1;
      m[0] = int8_t(k1);
      m[4] = int8_t(8 + k1);
      m[8] = int8_t(k2);
      m[12] = int8_t(8 + k2);
    }
  }

  // Offsets of 8 pixels, in memory: the word loads take them with scalar loads.
  using IdxMem = int32_t;
  FCX_AVX2_TARGET static void store_idx(IdxMem* p, Idx v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  }

  template <Load L, int C, bool Safe>
  FCX_AVX2_TARGET static void load_row2(const SampleSource& s, const IdxMem* a, const IdxMem* b,
                                        F* v) {
    const char* masks = static_cast<const char*>(s.masks);
    if constexpr (L == Load::WordPerTap) {
      F unused;
      for (int c = 0; c < C; ++c) {
        bytes2(words<Safe>(s, a, c * s.sC), masks, v[2 * c], unused);
        bytes2(words<Safe>(s, b, c * s.sC), masks, v[2 * c + 1], unused);
      }
    } else {
      Words w = words<Safe>(s, a, 0);
      for (int c = 0; c < C; ++c) {
        if constexpr (L == Load::WordPerChannel) {
          if (c > 0) w = words<Safe>(s, a, c * s.sC);
          bytes2(w, masks, v[2 * c], v[2 * c + 1]);
        } else {
          bytes2(w, masks + 32 * c, v[2 * c], v[2 * c + 1]);
        }
      }
    }
  }

  // Offsets of 8 pixels, through memory: 8 scalar loads are cheaper than 8 extracts.
  FCX_AVX2_TARGET static void spill(Idx o, int32_t* a) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(a), o);
    asm volatile("" : : "r"(a) : "memory");
  }

  template <Load L, int C, bool Safe>
  FCX_AVX2_TARGET static void load_row1(const SampleSource& s, Idx o, F* v) {
    alignas(32) int32_t a[8];
    spill(o, a);
    const char* masks = static_cast<const char*>(s.masks);
    F unused;
    if constexpr (L == Load::Word1) {
      const Words w = words<Safe>(s, a, 0);
      if constexpr (C == 1) {
        bytes2(w, masks, v[0], unused);
      } else {
        bytes2(w, masks, v[0], v[1]);
        bytes2(w, masks + 32, v[2], unused);
      }
    } else {
      for (int c = 0; c < C; ++c) bytes2(words<Safe>(s, a, c * s.sC), masks, v[c], unused);
    }
  }

  FCX_AVX2_TARGET static void store(float* dst, F v) { _mm256_storeu_ps(dst, v); }
  FCX_AVX2_TARGET static F load_f(const float* src) { return _mm256_loadu_ps(src); }

  FCX_AVX2_TARGET static __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  FCX_AVX2_TARGET static void store_out(float* dst, F v, int n) {
    if (n >= 8) {
      _mm256_storeu_ps(dst, v);
    } else if (n > 0) {
      _mm256_maskstore_ps(dst, first_lanes(n), v);
    }
  }
  FCX_AVX2_TARGET static void store_half_bits(void* dst, __m128i h, int n) {
    if (n >= 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), h);
    } else if (n > 0) {
      alignas(16) uint16_t tmp[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), h);
      std::memcpy(dst, tmp, sizeof(uint16_t) * n);
    }
  }
  FCX_AVX2_TARGET static void store_out(c10::Half* dst, F v, int n) {
    store_half_bits(dst, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), n);
  }
  // Round to nearest even, NaN -> 0x7FC0: c10::BFloat16's rule.
  FCX_AVX2_TARGET static void store_out(c10::BFloat16* dst, F v, int n) {
    const I32 u = bits(v);
    const I32 bias = iadd(iand(srl<16>(u), iset1(1)), iset1(0x7fff));
    I32 r = srl<16>(iadd(u, bias));
    const I32 nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, iset1(0x7fc0), nan);
    const I32 packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    store_half_bits(dst, _mm256_castsi256_si128(packed), n);
  }
  // (a, b, c) for pixels 0..7 -> 24 values a0 b0 c0 a1 ... c7 in (a, b, c) order.
  FCX_AVX2_TARGET static void interleave3(F& a, F& b, F& c) {
    // Lane k of the permuted a holds the pixel p with 3p = k (mod 8), likewise b (3p + 1) and
    // c (3p + 2); output vector m then takes lane k from the channel (8m + k) mod 3.
    const __m256 pa = _mm256_permutevar8x32_ps(a, _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5));
    const __m256 pb = _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(5, 0, 3, 6, 1, 4, 7, 2));
    const __m256 pc = _mm256_permutevar8x32_ps(c, _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7));
    // channel per lane: out0 a b c a b c a b, out1 c a b c a b c a, out2 b c a b c a b c
    a = _mm256_blend_ps(_mm256_blend_ps(pa, pb, 0x92), pc, 0x24);
    b = _mm256_blend_ps(_mm256_blend_ps(pa, pb, 0x24), pc, 0x49);
    c = _mm256_blend_ps(_mm256_blend_ps(pa, pb, 0x49), pc, 0x92);
  }
};
#endif  // FCX_X86_SIMD

}  // namespace cpu
}  // namespace augment
}  // namespace fastcore_ext
