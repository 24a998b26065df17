// Kernel 1, fused augmentation + normalization: what the CPU and CUDA backends share.
//
// - the argument checks (TORCH_CHECK with torchvision-style messages) and output allocation;
// - the per-sample geometry: the normalized output->input homography turned into pixel units;
// - the per-sample lighting constants.
//
// Geometry. With align_corners=False, output pixel (i, j) of an out_h x out_w image has the
// normalized coordinates xn = (2j + 1) / out_w - 1, yn = (2i + 1) / out_h - 1 (F.affine_grid),
// and the input coordinate gx in [-1, 1] maps to the pixel coordinate ((gx + 1) W - 1) / 2
// (F.grid_sample). With [X, Y, D] = M [xn, yn, 1]:
//     ix = (W/2) X/D + (W-1)/2 = Nx / D,   Nx = (W/2) X + ((W-1)/2) D,
// and Nx, Ny and D are affine in (j, i): N = a j + b i + c. For an affine matrix (last row
// 0, 0, 1) D == 1 and the kernels skip the division. The coefficients are computed in double;
// the kernels evaluate a j + (b i + c) in float, one fma per coordinate.
//
// Lighting (fastai): y = sigmoid(c (logit(x) + logit(b))) with x clamped to [1e-6, 1 - 1e-6].
// Rewritten as y = 1 / (1 + 2^(c log2((1 - x) / x) + log2k)), log2k = c log2((1 - b) / b): one
// log2, one exp2 and two divisions per value.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define FCX_HD __host__ __device__ __forceinline__
#else
#define FCX_HD inline
#endif

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace fastcore_ext {
namespace augment {

enum class Mode : int { Bilinear = 0, Nearest = 1 };
enum class Pad : int { Zeros = 0, Border = 1, Reflection = 2 };

constexpr float kLightEps = 1e-6f;  // lighting clamps x to [kLightEps, 1 - kLightEps]
// ... that is, r = (1 - x) / x to [kLightRMin, kLightRMax]
constexpr float kLightRMin = float(1e-6 / (1.0 - 1e-6));
constexpr float kLightRMax = float((1.0 - 1e-6) / 1e-6);

// Output pixel (j, i) -> input pixel (ix, iy) = (Nx / D, Ny / D); see the file header.
struct Geometry {
  double ax, bx, cx;  // Nx = ax j + bx i + cx
  double ay, by, cy;  // Ny
  double aw, bw, cw;  // D
  double inv_ax, inv_ay;  // 1 / ax, 1 / ay (0 where ax, ay are 0)
  bool affine;            // D == 1
};

// m: the 3x3 matrix, row-major, output -> input in normalized coordinates.
FCX_HD Geometry make_geometry(const float* m, int64_t H, int64_t W, int64_t out_h, int64_t out_w) {
  const double sx = 2.0 / double(out_w), ox = 1.0 / double(out_w) - 1.0;
  const double sy = 2.0 / double(out_h), oy = 1.0 / double(out_h) - 1.0;
  const double hw = 0.5 * double(W), hw1 = 0.5 * double(W - 1);
  const double hh = 0.5 * double(H), hh1 = 0.5 * double(H - 1);
  const double m00 = m[0], m01 = m[1], m02 = m[2];
  const double m10 = m[3], m11 = m[4], m12 = m[5];
  const double m20 = m[6], m21 = m[7], m22 = m[8];
  Geometry g;
  // Rows of M in (j, i, 1) terms: r(j, i) = (r0 sx) j + (r1 sy) i + (r0 ox + r1 oy + r2).
  const double xa = m00 * sx, xb = m01 * sy, xc = m00 * ox + m01 * oy + m02;
  const double ya = m10 * sx, yb = m11 * sy, yc = m10 * ox + m11 * oy + m12;
  g.aw = m20 * sx;
  g.bw = m21 * sy;
  g.cw = m20 * ox + m21 * oy + m22;
  g.ax = hw * xa + hw1 * g.aw;
  g.bx = hw * xb + hw1 * g.bw;
  g.cx = hw * xc + hw1 * g.cw;
  g.ay = hh * ya + hh1 * g.aw;
  g.by = hh * yb + hh1 * g.bw;
  g.cy = hh * yc + hh1 * g.cw;
  g.inv_ax = g.ax != 0.0 ? 1.0 / g.ax : 0.0;
  g.inv_ay = g.ay != 0.0 ? 1.0 / g.ay : 0.0;
  g.affine = (m[6] == 0.0f && m[7] == 0.0f && m[8] == 1.0f);
  return g;
}

enum class Light : int { None = 0, Identity = 1, Curve = 2 };

struct LightParams {
  Light kind;
  float c;    // contrast
  float log2k;  // c * log2((1 - b) / b)
};

// (b, c) = (brightness, contrast) of one sample. (0.5, 1) is the identity curve (only the clamp
// to [1e-6, 1 - 1e-6] remains).
FCX_HD LightParams make_light(float b, float c) {
  LightParams p;
  if (b == 0.5f && c == 1.0f) {
    p.kind = Light::Identity;
    p.c = 1.0f;
    p.log2k = 0.0f;
  } else {
    p.kind = Light::Curve;
    p.c = c;
    p.log2k = float(double(c) * ::log2((1.0 - double(b)) / double(b)));
  }
  return p;
}

// ---- host side: argument checks and the output tensor ------------------------------------

inline Mode parse_mode(const std::string& mode) {
  if (mode == "bilinear") return Mode::Bilinear;
  if (mode == "nearest") return Mode::Nearest;
  TORCH_CHECK(false, "mode should be 'bilinear' or 'nearest', got '", mode, "'");
}

inline Pad parse_pad(const std::string& pad_mode) {
  if (pad_mode == "zeros") return Pad::Zeros;
  if (pad_mode == "border") return Pad::Border;
  if (pad_mode == "reflection") return Pad::Reflection;
  TORCH_CHECK(false, "pad_mode should be 'zeros', 'border' or 'reflection', got '", pad_mode,
              "'");
}

struct Plan {
  Mode mode;
  Pad pad;
  int64_t B, C, H, W, out_h, out_w;
  float scale[3];     // no lighting: out = v * scale + shift, v the sampled value in [0, 255]
  float shift[3];     //   (scale = 1 / (255 std), shift = -mean / std)
  float inv_std[3];   // lighting: out = y * inv_std + shift, y in [0, 1]
  at::Tensor matrices;  // contiguous float32 [B, 3, 3]
  at::Tensor lighting;  // contiguous float32 [B, 2], or undefined
  at::Tensor out;       // [B, C, out_h, out_w], allocated, every element to be written once
};

// Checks every argument (the Python wrapper checks them too, with Python exceptions) and
// allocates the output on images' device.
inline Plan make_plan(const at::Tensor& images, const at::Tensor& matrices, int64_t out_h,
                      int64_t out_w, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                      const c10::optional<at::Tensor>& lighting, const std::string& mode,
                      const std::string& pad_mode, at::ScalarType out_dtype, bool channels_last) {
  TORCH_CHECK(images.dim() == 4, "images should be a 4d tensor [B, C, H, W], got ", images.dim(),
              "D");
  TORCH_CHECK(images.scalar_type() == at::kByte, "images should be uint8, got ",
              images.scalar_type());
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  TORCH_CHECK(C == 1 || C == 3, "images should have 1 or 3 channels, got ", C);
  TORCH_CHECK(H > 0 && W > 0, "images should have a positive height and width, got ", H, "x", W);
  TORCH_CHECK(out_h > 0 && out_w > 0, "size should be positive, got (", out_h, ", ", out_w, ")");
  TORCH_CHECK(matrices.dim() == 3 && matrices.size(1) == 3 && matrices.size(2) == 3,
              "matrices should be a [B, 3, 3] tensor, got ", matrices.sizes());
  TORCH_CHECK(matrices.size(0) == B, "matrices should have one matrix per image (", B, "), got ",
              matrices.size(0));
  TORCH_CHECK(matrices.scalar_type() == at::kFloat, "matrices should be float32, got ",
              matrices.scalar_type());
  TORCH_CHECK(matrices.device() == images.device(),
              "matrices should be on the device of images (", images.device(), "), got ",
              matrices.device());
  TORCH_CHECK(int64_t(mean.size()) == C, "mean should have one value per channel (", C, "), got ",
              mean.size());
  TORCH_CHECK(int64_t(std.size()) == C, "std should have one value per channel (", C, "), got ",
              std.size());
  for (int64_t c = 0; c < C; ++c) {
    TORCH_CHECK(std[c] > 0 && std::isfinite(std[c]), "std should be positive and finite, got ",
                std[c], " for channel ", c);
    TORCH_CHECK(std::isfinite(mean[c]), "mean should be finite, got ", mean[c], " for channel ",
                c);
  }
  TORCH_CHECK(out_dtype == at::kFloat || out_dtype == at::kHalf || out_dtype == at::kBFloat16,
              "out_dtype should be float32, float16 or bfloat16, got ", out_dtype);
  Plan p;
  p.mode = parse_mode(mode);
  p.pad = parse_pad(pad_mode);
  if (lighting.has_value() && lighting->defined()) {
    const at::Tensor& l = *lighting;
    TORCH_CHECK(l.dim() == 2 && l.size(0) == B && l.size(1) == 2,
                "lighting should be a [B, 2] tensor (brightness, contrast) with B = ", B,
                ", got ", l.sizes());
    TORCH_CHECK(l.scalar_type() == at::kFloat, "lighting should be float32, got ",
                l.scalar_type());
    TORCH_CHECK(l.device() == images.device(), "lighting should be on the device of images (",
                images.device(), "), got ", l.device());
    p.lighting = l.contiguous();
  }
  p.B = B;
  p.C = C;
  p.H = H;
  p.W = W;
  p.out_h = out_h;
  p.out_w = out_w;
  for (int64_t c = 0; c < 3; ++c) {
    const double m = c < C ? mean[c] : 0.0, s = c < C ? std[c] : 1.0;
    p.scale[c] = float(1.0 / (255.0 * s));
    p.shift[c] = float(-m / s);
    p.inv_std[c] = float(1.0 / s);
  }
  p.matrices = matrices.contiguous();
  p.out = at::empty({B, C, out_h, out_w},
                    images.options().dtype(out_dtype).memory_format(
                        channels_last ? at::MemoryFormat::ChannelsLast
                                      : at::MemoryFormat::Contiguous));
  return p;
}

}  // namespace augment
}  // namespace fastcore_ext
