// Kernel 1, fused augmentation + normalization: the per-sample math the CPU and CUDA backends
// (and bench/dev/augment_normalize.cu) share, free of ATen. The argument checks and the
// output tensor are in augment_normalize_args.h.
//
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

#include "macros.h"

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
  double ax, bx, cx;      // Nx = ax j + bx i + cx
  double ay, by, cy;      // Ny
  double aw, bw, cw;      // D
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
  float c;      // contrast
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

}  // namespace augment
}  // namespace fastcore_ext
