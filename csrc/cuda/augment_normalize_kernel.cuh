// Kernel 1 on CUDA, the production kernel "row4" and its device helpers, free of ATen: included
// by csrc/cuda/augment_normalize.cu (the op) and by bench/dev/augment_normalize.cu (which times it
// against other variants). Specification: csrc/augment_normalize.h and fastcore_ext/reference.py;
// the coordinates are evaluated exactly as on the CPU, so CPU and CUDA agree to float rounding of
// the same operations.
//
// One small kernel computes every sample's constants first (sample_params_kernel); then each
// thread makes kPx = 4 consecutive output pixels of one row (blocks of 128 x 8 pixels), with 16-
// or 8-byte stores where layout and alignment allow. Inputs are read as uint8 through their
// strides (no float copy, any memory format). Include this header from one file per binary.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "augment_normalize.h"

namespace fastcore_ext {
namespace augment {
namespace cuda {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;

struct Strides4 {
  int64_t b, c, h, w;
};

// Zeros: bounded to [-2, size + 1] (no result changes; NaN/inf stay out of the weights).
template <Pad pad>
__device__ __forceinline__ float pad_coordinate(float x, float size) {
  if (pad == Pad::Zeros) {
    return fminf(fmaxf(x, -2.0f), size + 1.0f);  // fmaxf(NaN, -2) = -2
  }
  if (pad == Pad::Reflection) {
    if (!(x >= -0.5f && x <= size - 0.5f)) {
      const float t = x + 0.5f;
      const float q = floorf(t * (0.5f / size));
      const float u = fmaf(-q, 2.0f * size, t);
      x = (size - 0.5f) - fabsf(u - size);
    }
  }
  return fminf(fmaxf(x, 0.0f), size - 1.0f);  // NaN -> 0
}

// The lighting curve of the CPU kernel's finish_value: y = 1 / (1 + 2^(c log2(r) + log2k)),
// r = (255 - v) / v clamped (v = 0: r = inf, clamped).
__device__ __forceinline__ float lit(float v, float c, float log2k) {
  const float r = fminf(fmaxf((255.0f - v) / v, kLightRMin), kLightRMax);
  // log2f, not __log2f: the fast intrinsic's error, times a large contrast c, moves y visibly
  const float e = exp2f(fmaf(c, log2f(r), log2k));
  return __frcp_rn(1.0f + e);
}

// The C channel values (0..255, float) of one output pixel whose input point is (x, y) in pixel
// units, after grid_sample's padding rule; uint8 reads through the image's strides.
template <Mode mode, Pad pad, int C>
__device__ __forceinline__ void sample_pixel(const uint8_t* __restrict__ src, const Strides4& in_s,
                                             float x, float y, float fw, float fh, float (&v)[C]) {
  x = pad_coordinate<pad>(x, fw);
  y = pad_coordinate<pad>(y, fh);
  if (mode == Mode::Nearest) {
    const float xr = nearbyintf(x), yr = nearbyintf(y);
    const bool valid = xr >= 0.0f && xr <= fw - 1.0f && yr >= 0.0f && yr <= fh - 1.0f;
    const int64_t off = int64_t(fminf(fmaxf(yr, 0.0f), fh - 1.0f)) * in_s.h +
                        int64_t(fminf(fmaxf(xr, 0.0f), fw - 1.0f)) * in_s.w;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      v[c] = (pad != Pad::Zeros || valid) ? float(__ldg(src + off + c * in_s.c)) : 0.0f;
    }
  } else {
    const float x0 = floorf(x), y0 = floorf(y);
    const float x1 = x0 + 1.0f, y1 = y0 + 1.0f;
    const float e = x - x0, w = x1 - x, s = y - y0, n = y1 - y;
    const float wnw = w * n, wne = e * n, wsw = w * s, wse = e * s;
    const bool vx0 = x0 >= 0.0f && x0 <= fw - 1.0f, vx1 = x1 >= 0.0f && x1 <= fw - 1.0f;
    const bool vy0 = y0 >= 0.0f && y0 <= fh - 1.0f, vy1 = y1 >= 0.0f && y1 <= fh - 1.0f;
    const int64_t xa = int64_t(fminf(fmaxf(x0, 0.0f), fw - 1.0f)) * in_s.w;
    const int64_t xb = int64_t(fminf(fmaxf(x1, 0.0f), fw - 1.0f)) * in_s.w;
    const int64_t ya = int64_t(fminf(fmaxf(y0, 0.0f), fh - 1.0f)) * in_s.h;
    const int64_t yb = int64_t(fminf(fmaxf(y1, 0.0f), fh - 1.0f)) * in_s.h;
    const bool z = pad == Pad::Zeros;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const uint8_t* p = src + c * in_s.c;
      const float tnw = (!z || (vy0 && vx0)) ? float(__ldg(p + ya + xa)) : 0.0f;
      const float tne = (!z || (vy0 && vx1)) ? float(__ldg(p + ya + xb)) : 0.0f;
      const float tsw = (!z || (vy1 && vx0)) ? float(__ldg(p + yb + xa)) : 0.0f;
      const float tse = (!z || (vy1 && vx1)) ? float(__ldg(p + yb + xb)) : 0.0f;
      float acc = tnw * wnw;
      acc = fmaf(tne, wne, acc);
      acc = fmaf(tsw, wsw, acc);
      v[c] = fmaf(tse, wse, acc);
    }
  }
}

struct Norm {
  float3 scale, shift, inv_std;  // see Plan
};

// Lighting (kind `light`) and normalization of channel c's sampled value v.
__device__ __forceinline__ float finish(float v, int c, int light, float light_c, float log2k,
                                        const Norm& nm) {
  const float sc = c == 0 ? nm.scale.x : (c == 1 ? nm.scale.y : nm.scale.z);
  const float sf = c == 0 ? nm.shift.x : (c == 1 ? nm.shift.y : nm.shift.z);
  const float is = c == 0 ? nm.inv_std.x : (c == 1 ? nm.inv_std.y : nm.inv_std.z);
  if (light == int(Light::None)) return fmaf(v, sc, sf);
  if (light == int(Light::Identity)) {
    const float xc = fminf(fmaxf(v * (1.0f / 255.0f), kLightEps), 1.0f - kLightEps);
    return fmaf(xc, is, sf);
  }
  return fmaf(lit(v, light_c, log2k), is, sf);
}

// ---- kPx consecutive output pixels of one row per thread, the samples'
// constants computed beforehand by one small kernel (no per-block setup, no barrier), and
// 16- or 8-byte stores where the output's layout and alignment allow ------------------------
constexpr int kPx = 4;

struct SampleParams {
  double bx, cx, by, cy, bw, cw;  // the row terms b i + c, evaluated in double as on the CPU
  float ax, ay, aw;
  int affine;
  int light;
  float light_c, light_log2k;
};

__global__ void sample_params_kernel(const float* __restrict__ matrices,
                                     const float* __restrict__ lighting, int64_t B, int64_t H,
                                     int64_t W, int64_t out_h, int64_t out_w,
                                     SampleParams* __restrict__ params) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const Geometry g = make_geometry(matrices + 9 * b, H, W, out_h, out_w);
  SampleParams p;
  p.bx = g.bx;
  p.cx = g.cx;
  p.by = g.by;
  p.cy = g.cy;
  p.bw = g.bw;
  p.cw = g.cw;
  p.ax = float(g.ax);
  p.ay = float(g.ay);
  p.aw = float(g.aw);
  p.affine = g.affine ? 1 : 0;
  p.light = int(Light::None);
  p.light_c = 1.0f;
  p.light_log2k = 0.0f;
  if (lighting != nullptr) {
    const LightParams lp = make_light(lighting[2 * b], lighting[2 * b + 1]);
    p.light = int(lp.kind);
    p.light_c = lp.c;
    p.light_log2k = lp.log2k;
  }
  params[b] = p;
}

__device__ __forceinline__ uint32_t bits(float v) { return __float_as_uint(v); }
__device__ __forceinline__ uint32_t bits(c10::Half v) { return v.x; }
__device__ __forceinline__ uint32_t bits(c10::BFloat16 v) { return v.x; }

// Stores the N values of vals, consecutive in memory from dst: 16-byte stores when dst is
// 16-byte aligned and the run a multiple of 16 bytes, else 8-byte, else one value at a time.
template <typename out_t, int N>
__device__ __forceinline__ void store_run(out_t* dst, const out_t (&vals)[N]) {
  constexpr int kBytes = N * int(sizeof(out_t));
  const uintptr_t addr = reinterpret_cast<uintptr_t>(dst);
  if constexpr (kBytes % 8 == 0) {
    constexpr int kWords = kBytes / 4;
    uint32_t w[kWords];
#pragma unroll
    for (int q = 0; q < kWords; ++q) {
      if constexpr (sizeof(out_t) == 4) {
        w[q] = bits(vals[q]);
      } else {
        w[q] = bits(vals[2 * q]) | (bits(vals[2 * q + 1]) << 16);
      }
    }
    if constexpr (kBytes % 16 == 0) {
      if (addr % 16 == 0) {
#pragma unroll
        for (int q = 0; q < kWords; q += 4) {
          reinterpret_cast<uint4*>(dst)[q / 4] = make_uint4(w[q], w[q + 1], w[q + 2], w[q + 3]);
        }
        return;
      }
    }
    if (addr % 8 == 0) {
#pragma unroll
      for (int q = 0; q < kWords; q += 2) {
        reinterpret_cast<uint2*>(dst)[q / 2] = make_uint2(w[q], w[q + 1]);
      }
      return;
    }
  }
#pragma unroll
  for (int n = 0; n < N; ++n) dst[n] = vals[n];
}

template <typename out_t, Mode mode, Pad pad, int C>
__global__ void __launch_bounds__(kBlockX* kBlockY)
    augment_normalize_row4_kernel(const uint8_t* __restrict__ images, Strides4 in_s,
                                  const SampleParams* __restrict__ params, out_t* __restrict__ out,
                                  Strides4 out_s, int64_t b_first, int64_t H, int64_t W,
                                  int64_t out_h, int64_t out_w, Norm nm) {
  const int64_t b = b_first + blockIdx.z;
  const int64_t i = int64_t(blockIdx.y) * kBlockY + threadIdx.y;
  const int64_t j0 = (int64_t(blockIdx.x) * kBlockX + threadIdx.x) * kPx;
  if (i >= out_h || j0 >= out_w) return;
  const SampleParams& sp = params[b];
  const double di = double(i);
  const float rx = float(fma(__ldg(&sp.bx), di, __ldg(&sp.cx)));
  const float ry = float(fma(__ldg(&sp.by), di, __ldg(&sp.cy)));
  const float rw = float(fma(__ldg(&sp.bw), di, __ldg(&sp.cw)));
  const float ax = __ldg(&sp.ax), ay = __ldg(&sp.ay), aw = __ldg(&sp.aw);
  const bool affine = __ldg(&sp.affine) != 0;
  const int light = __ldg(&sp.light);
  const float light_c = __ldg(&sp.light_c), log2k = __ldg(&sp.light_log2k);
  const uint8_t* src = images + b * in_s.b;
  const float fw = float(W), fh = float(H);

  // Every pixel of the run is sampled, also past out_w (reads stay inside the image: the
  // padding clamps the coordinates), and only the valid ones are stored.
  out_t r[C][kPx];
#pragma unroll
  for (int k = 0; k < kPx; ++k) {
    const float fj = float(j0 + k);
    float x = fmaf(ax, fj, rx), y = fmaf(ay, fj, ry);
    if (!affine) {
      const float d = fmaf(aw, fj, rw);
      x = x / d;
      y = y / d;
    }
    float v[C];
    sample_pixel<mode, pad, C>(src, in_s, x, y, fw, fh, v);
#pragma unroll
    for (int c = 0; c < C; ++c)
      r[c][k] = static_cast<out_t>(finish(v[c], c, light, light_c, log2k, nm));
  }

  out_t* dst = out + b * out_s.b + i * out_s.h + j0 * out_s.w;
  const bool whole = j0 + kPx <= out_w;
  if (whole && out_s.w == 1) {  // NCHW (or C = 1): each channel's run is contiguous
#pragma unroll
    for (int c = 0; c < C; ++c) store_run<out_t, kPx>(dst + c * out_s.c, r[c]);
  } else if (whole && C > 1 && out_s.c == 1 && out_s.w == C) {  // channels_last: one run
    out_t run[kPx * C];
#pragma unroll
    for (int k = 0; k < kPx; ++k) {
#pragma unroll
      for (int c = 0; c < C; ++c) run[k * C + c] = r[c][k];
    }
    store_run<out_t, kPx * C>(dst, run);
  } else {
#pragma unroll
    for (int k = 0; k < kPx; ++k) {
      if (j0 + k < out_w) {
#pragma unroll
        for (int c = 0; c < C; ++c) dst[k * out_s.w + c * out_s.c] = r[c][k];
      }
    }
  }
}

}  // namespace cuda
}  // namespace augment
}  // namespace fastcore_ext
