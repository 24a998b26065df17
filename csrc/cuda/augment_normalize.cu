// Kernel 1 on CUDA: fused augmentation + normalization (specification: csrc/augment_normalize.h
// and fastcore_ext/reference.py; the CPU kernel follows the same steps, and the coordinates are
// evaluated exactly as there, so CPU and CUDA agree to float rounding of the same operations).
//
// Two variants, chosen per call by FASTCORE_EXT_AUGMENT_CUDA (see requested_variant):
// - "pixel": one thread per output pixel, blocks of 32 x 8 pixels of one sample; thread 0 of
//   each block computes the sample's geometry and lighting constants into shared memory.
// - "row4" (default): one small kernel computes every sample's constants first; then each
//   thread makes 4 consecutive output pixels of one row (blocks of 128 x 8 pixels), with 16- or
//   8-byte stores where layout and alignment allow.
// Inputs are read as uint8 through their strides (no float copy, any memory format).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>

#include "augment_normalize.h"

namespace fastcore_ext {
namespace augment {
namespace cuda {
namespace {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;

struct Strides4 {
  int64_t b, c, h, w;
};

struct SampleShared {
  double bx, cx, by, cy, bw, cw;  // the row terms b i + c, evaluated in double as on the CPU
  float ax, ay, aw;
  int affine;
  int light;  // Light
  float light_c, light_log2k;
};

// grid_sample's padding of one coordinate (align_corners=False); see the CPU pad_coordinate.
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

// ---- variant "pixel": one thread per output pixel; thread 0 of each block computes the
// sample's constants into shared memory ---------------------------------------------------
template <typename out_t, Mode mode, Pad pad, int C>
__global__ void __launch_bounds__(kBlockX* kBlockY)
    augment_normalize_kernel(const uint8_t* __restrict__ images, Strides4 in_s,
                             const float* __restrict__ matrices,
                             const float* __restrict__ lighting, out_t* __restrict__ out,
                             Strides4 out_s, int64_t b_first, int64_t H, int64_t W,
                             int64_t out_h, int64_t out_w, Norm nm) {
  __shared__ SampleShared sh;
  const int64_t b = b_first + blockIdx.z;
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    const Geometry g = make_geometry(matrices + 9 * b, H, W, out_h, out_w);
    sh.ax = float(g.ax);
    sh.ay = float(g.ay);
    sh.aw = float(g.aw);
    sh.bx = g.bx;
    sh.cx = g.cx;
    sh.by = g.by;
    sh.cy = g.cy;
    sh.bw = g.bw;
    sh.cw = g.cw;
    sh.affine = g.affine ? 1 : 0;
    if (lighting != nullptr) {
      const LightParams lp = make_light(lighting[2 * b], lighting[2 * b + 1]);
      sh.light = int(lp.kind);
      sh.light_c = lp.c;
      sh.light_log2k = lp.log2k;
    } else {
      sh.light = int(Light::None);
    }
  }
  __syncthreads();
  const int64_t j = int64_t(blockIdx.x) * kBlockX + threadIdx.x;
  const int64_t i = int64_t(blockIdx.y) * kBlockY + threadIdx.y;
  if (j >= out_w || i >= out_h) return;

  // Exactly the CPU kernel's RowCoords: the row term b i + c in double, rounded once, then
  // a j + r in float (one fma), and N / D for perspective matrices.
  const float fj = float(j);
  const double di = double(i);
  float x = fmaf(sh.ax, fj, float(fma(sh.bx, di, sh.cx)));
  float y = fmaf(sh.ay, fj, float(fma(sh.by, di, sh.cy)));
  if (!sh.affine) {
    const float d = fmaf(sh.aw, fj, float(fma(sh.bw, di, sh.cw)));
    x = x / d;
    y = y / d;
  }
  float v[C];
  sample_pixel<mode, pad, C>(images + b * in_s.b, in_s, x, y, float(W), float(H), v);
  out_t* dst = out + b * out_s.b + i * out_s.h + j * out_s.w;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    dst[c * out_s.c] =
        static_cast<out_t>(finish(v[c], c, sh.light, sh.light_c, sh.light_log2k, nm));
  }
}

// ---- variant "row4": kPx consecutive output pixels of one row per thread, the samples'
// constants computed beforehand by one small kernel (no per-block setup, no barrier), and
// 16- or 8-byte stores where the output's layout and alignment allow ------------------------
constexpr int kPx = 4;

struct SampleParams {
  double bx, cx, by, cy, bw, cw;  // row terms, as in SampleShared
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
__device__ __forceinline__ uint32_t bits(at::Half v) { return v.x; }
__device__ __forceinline__ uint32_t bits(at::BFloat16 v) { return v.x; }

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
                                  const SampleParams* __restrict__ params,
                                  out_t* __restrict__ out, Strides4 out_s, int64_t b_first,
                                  int64_t H, int64_t W, int64_t out_h, int64_t out_w, Norm nm) {
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
    for (int c = 0; c < C; ++c) r[c][k] = static_cast<out_t>(finish(v[c], c, light, light_c, log2k, nm));
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

enum class Variant { Pixel, Row4 };

// FASTCORE_EXT_AUGMENT_CUDA=pixel|row4 picks the kernel (default row4); both compute the same
// values, bit for bit.
Variant requested_variant() {
  const char* env = std::getenv("FASTCORE_EXT_AUGMENT_CUDA");
  if (env == nullptr || env[0] == '\0') return Variant::Row4;
  const std::string v(env);
  if (v == "row4") return Variant::Row4;
  if (v == "pixel") return Variant::Pixel;
  TORCH_CHECK(false, "FASTCORE_EXT_AUGMENT_CUDA should be 'pixel' or 'row4', got '", v, "'");
}

struct Launch {
  Variant variant;
  int64_t b_first;
  dim3 grid;
  const SampleParams* params;  // row4
  cudaStream_t stream;
};

template <typename out_t, Mode mode, Pad pad, int C>
void launch_c(const Plan& p, const at::Tensor& images, const Launch& l) {
  const Strides4 in_s{images.stride(0), images.stride(1), images.stride(2), images.stride(3)};
  const Strides4 out_s{p.out.stride(0), p.out.stride(1), p.out.stride(2), p.out.stride(3)};
  const Norm nm{float3{p.scale[0], p.scale[1], p.scale[2]},
                float3{p.shift[0], p.shift[1], p.shift[2]},
                float3{p.inv_std[0], p.inv_std[1], p.inv_std[2]}};
  const dim3 block(kBlockX, kBlockY);
  out_t* out = reinterpret_cast<out_t*>(p.out.data_ptr());
  if (l.variant == Variant::Row4) {
    augment_normalize_row4_kernel<out_t, mode, pad, C><<<l.grid, block, 0, l.stream>>>(
        images.data_ptr<uint8_t>(), in_s, l.params, out, out_s, l.b_first, p.H, p.W, p.out_h,
        p.out_w, nm);
  } else {
    const float* light = p.lighting.defined() ? p.lighting.data_ptr<float>() : nullptr;
    augment_normalize_kernel<out_t, mode, pad, C><<<l.grid, block, 0, l.stream>>>(
        images.data_ptr<uint8_t>(), in_s, p.matrices.data_ptr<float>(), light, out, out_s,
        l.b_first, p.H, p.W, p.out_h, p.out_w, nm);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename out_t, Mode mode, Pad pad>
void launch_pad(const Plan& p, const at::Tensor& images, const Launch& l) {
  if (p.C == 1) {
    launch_c<out_t, mode, pad, 1>(p, images, l);
  } else {
    launch_c<out_t, mode, pad, 3>(p, images, l);
  }
}

template <typename out_t, Mode mode>
void launch_mode(const Plan& p, const at::Tensor& images, const Launch& l) {
  switch (p.pad) {
    case Pad::Zeros:
      return launch_pad<out_t, mode, Pad::Zeros>(p, images, l);
    case Pad::Border:
      return launch_pad<out_t, mode, Pad::Border>(p, images, l);
    case Pad::Reflection:
      return launch_pad<out_t, mode, Pad::Reflection>(p, images, l);
  }
}

template <typename out_t>
void launch(const Plan& p, const at::Tensor& images, const Launch& l) {
  if (p.mode == Mode::Nearest) {
    launch_mode<out_t, Mode::Nearest>(p, images, l);
  } else {
    launch_mode<out_t, Mode::Bilinear>(p, images, l);
  }
}

at::Tensor augment_normalize_cuda(const at::Tensor& images, const at::Tensor& matrices,
                                  int64_t out_h, int64_t out_w, at::ArrayRef<double> mean,
                                  at::ArrayRef<double> std,
                                  const c10::optional<at::Tensor>& lighting,
                                  c10::string_view mode, c10::string_view pad_mode,
                                  at::ScalarType out_dtype, bool channels_last) {
  TORCH_CHECK(images.is_cuda(), "images should be a CUDA tensor here, got ", images.device());
  const c10::cuda::CUDAGuard device_guard(images.device());
  Plan plan = make_plan(images, matrices, out_h, out_w, mean, std, lighting, std::string(mode),
                        std::string(pad_mode), out_dtype, channels_last);
  if (plan.out.numel() == 0) return plan.out;
  // grid.y (rows of blocks) is limited to 65535, grid.x to 2^31 - 1
  TORCH_CHECK(out_h <= int64_t(65535) * kBlockY, "size should have out_h at most ",
              int64_t(65535) * kBlockY, " on CUDA, got ", out_h);
  Launch l;
  l.variant = requested_variant();
  l.stream = at::cuda::getCurrentCUDAStream();
  l.params = nullptr;
  at::Tensor params;  // row4: [B] SampleParams, computed on the device from matrices/lighting
  int64_t px_per_block_x = kBlockX;
  if (l.variant == Variant::Row4) {
    static_assert(sizeof(SampleParams) % 8 == 0, "SampleParams: whole doubles");
    params = at::empty({plan.B * int64_t(sizeof(SampleParams) / 8)},
                       images.options().dtype(at::kDouble));
    auto* pp = reinterpret_cast<SampleParams*>(params.data_ptr<double>());
    const float* light = plan.lighting.defined() ? plan.lighting.data_ptr<float>() : nullptr;
    const int threads = 128;
    const unsigned blocks = unsigned((plan.B + threads - 1) / threads);
    sample_params_kernel<<<blocks, threads, 0, l.stream>>>(plan.matrices.data_ptr<float>(), light,
                                                           plan.B, plan.H, plan.W, out_h, out_w,
                                                           pp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    l.params = pp;
    px_per_block_x = int64_t(kBlockX) * kPx;
  }
  const int64_t max_z = 65535;
  for (int64_t b0 = 0; b0 < plan.B; b0 += max_z) {
    const int64_t nb = std::min(max_z, plan.B - b0);
    l.b_first = b0;
    l.grid = dim3(unsigned((out_w + px_per_block_x - 1) / px_per_block_x),
                  unsigned((out_h + kBlockY - 1) / kBlockY), unsigned(nb));
    switch (out_dtype) {
      case at::kFloat:
        launch<float>(plan, images, l);
        break;
      case at::kHalf:
        launch<at::Half>(plan, images, l);
        break;
      case at::kBFloat16:
        launch<at::BFloat16>(plan, images, l);
        break;
      default:
        TORCH_INTERNAL_ASSERT(false, "augment_normalize: unexpected out dtype");
    }
  }
  return plan.out;
}

}  // namespace
}  // namespace cuda
}  // namespace augment
}  // namespace fastcore_ext

TORCH_LIBRARY_IMPL(fastcore_ext, CUDA, m) {
  m.impl("augment_normalize", &fastcore_ext::augment::cuda::augment_normalize_cuda);
}
