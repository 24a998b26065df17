// Kernel 1 on CUDA: fused augmentation + normalization (specification: csrc/augment_normalize.h
// and fastcore_ext/reference.py; the CPU kernel follows the same steps).
//
// One thread per output pixel, all C channels; blocks of 32 x 8 pixels of one sample, so
// consecutive threads write consecutive x (coalesced for NCHW; 3 interleaved values per thread
// for channels_last). Inputs are read as uint8 through their strides (no float copy); the
// sample's geometry and lighting constants are computed once per block into shared memory.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

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

template <typename out_t, Mode mode, Pad pad, int C>
__global__ void __launch_bounds__(kBlockX* kBlockY)
    augment_normalize_kernel(const uint8_t* __restrict__ images, Strides4 in_s,
                             const float* __restrict__ matrices,
                             const float* __restrict__ lighting, out_t* __restrict__ out,
                             Strides4 out_s, int64_t b_first, int64_t H, int64_t W,
                             int64_t out_h, int64_t out_w, float3 scale, float3 shift,
                             float3 inv_std) {
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
  const float fw = float(W), fh = float(H);
  x = pad_coordinate<pad>(x, fw);
  y = pad_coordinate<pad>(y, fh);

  const uint8_t* src = images + b * in_s.b;
  float v[C];
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

  const float sc[3] = {scale.x, scale.y, scale.z};
  const float sf[3] = {shift.x, shift.y, shift.z};
  const float is[3] = {inv_std.x, inv_std.y, inv_std.z};
  out_t* dst = out + b * out_s.b + i * out_s.h + j * out_s.w;
  const int light = sh.light;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    float r;
    if (light == int(Light::None)) {
      r = fmaf(v[c], sc[c], sf[c]);
    } else if (light == int(Light::Identity)) {
      const float xc = fminf(fmaxf(v[c] * (1.0f / 255.0f), kLightEps), 1.0f - kLightEps);
      r = fmaf(xc, is[c], sf[c]);
    } else {
      r = fmaf(lit(v[c], sh.light_c, sh.light_log2k), is[c], sf[c]);
    }
    dst[c * out_s.c] = static_cast<out_t>(r);
  }
}

template <typename out_t, Mode mode, Pad pad>
void launch_c(const Plan& p, const at::Tensor& images, int64_t C, dim3 grid, int64_t b_first,
              cudaStream_t stream) {
  const Strides4 in_s{images.stride(0), images.stride(1), images.stride(2), images.stride(3)};
  const Strides4 out_s{p.out.stride(0), p.out.stride(1), p.out.stride(2), p.out.stride(3)};
  const float* light = p.lighting.defined() ? p.lighting.data_ptr<float>() : nullptr;
  const float3 scale{p.scale[0], p.scale[1], p.scale[2]};
  const float3 shift{p.shift[0], p.shift[1], p.shift[2]};
  const float3 inv_std{p.inv_std[0], p.inv_std[1], p.inv_std[2]};
  const dim3 block(kBlockX, kBlockY);
  out_t* out = reinterpret_cast<out_t*>(p.out.data_ptr());
  if (C == 1) {
    augment_normalize_kernel<out_t, mode, pad, 1><<<grid, block, 0, stream>>>(
        images.data_ptr<uint8_t>(), in_s, p.matrices.data_ptr<float>(), light, out, out_s,
        b_first, p.H, p.W, p.out_h, p.out_w, scale, shift, inv_std);
  } else {
    augment_normalize_kernel<out_t, mode, pad, 3><<<grid, block, 0, stream>>>(
        images.data_ptr<uint8_t>(), in_s, p.matrices.data_ptr<float>(), light, out, out_s,
        b_first, p.H, p.W, p.out_h, p.out_w, scale, shift, inv_std);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename out_t, Mode mode>
void launch_pad(const Plan& p, const at::Tensor& images, dim3 grid, int64_t b_first,
                cudaStream_t stream) {
  switch (p.pad) {
    case Pad::Zeros:
      return launch_c<out_t, mode, Pad::Zeros>(p, images, p.C, grid, b_first, stream);
    case Pad::Border:
      return launch_c<out_t, mode, Pad::Border>(p, images, p.C, grid, b_first, stream);
    case Pad::Reflection:
      return launch_c<out_t, mode, Pad::Reflection>(p, images, p.C, grid, b_first, stream);
  }
}

template <typename out_t>
void launch(const Plan& p, const at::Tensor& images, dim3 grid, int64_t b_first,
            cudaStream_t stream) {
  if (p.mode == Mode::Nearest) {
    launch_pad<out_t, Mode::Nearest>(p, images, grid, b_first, stream);
  } else {
    launch_pad<out_t, Mode::Bilinear>(p, images, grid, b_first, stream);
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
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t max_z = 65535;
  for (int64_t b0 = 0; b0 < plan.B; b0 += max_z) {
    const int64_t nb = std::min(max_z, plan.B - b0);
    const dim3 grid(unsigned((out_w + kBlockX - 1) / kBlockX),
                    unsigned((out_h + kBlockY - 1) / kBlockY), unsigned(nb));
    switch (out_dtype) {
      case at::kFloat:
        launch<float>(plan, images, grid, b0, stream);
        break;
      case at::kHalf:
        launch<at::Half>(plan, images, grid, b0, stream);
        break;
      case at::kBFloat16:
        launch<at::BFloat16>(plan, images, grid, b0, stream);
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
