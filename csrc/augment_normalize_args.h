// Kernel 1, fused augmentation + normalization: the argument checks both backends run before
// they read anything, and the output tensor. The rules and messages are those of the Python
// wrapper (fastcore_ext/ops.py: augment_normalize), which checks first; these guard callers of
// torch.ops.fastcore_ext.augment_normalize.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "augment_normalize.h"
#include "checks.h"

namespace fastcore_ext {
namespace augment {

// CUDA grid rows of kCudaBlockY-pixel blocks are limited to 65535 (csrc/cuda/augment_normalize.cu).
constexpr int64_t kCudaBlockY = 8;
constexpr int64_t kCudaMaxOutH = int64_t(65535) * kCudaBlockY;

inline Mode parse_mode(const std::string& mode) {
  if (mode == "bilinear") return Mode::Bilinear;
  if (mode == "nearest") return Mode::Nearest;
  TORCH_CHECK_VALUE(false, "mode should be 'bilinear' or 'nearest', got '", mode, "'");
}

inline Pad parse_pad(const std::string& pad_mode) {
  if (pad_mode == "zeros") return Pad::Zeros;
  if (pad_mode == "border") return Pad::Border;
  if (pad_mode == "reflection") return Pad::Reflection;
  TORCH_CHECK_VALUE(false, "pad_mode should be 'zeros', 'border' or 'reflection', got '", pad_mode,
                    "'");
}

struct Plan {
  Mode mode;
  Pad pad;
  int64_t B, C, H, W, out_h, out_w;
  float scale[3];       // no lighting: out = v * scale + shift, v the sampled value in [0, 255]
  float shift[3];       //   (scale = 1 / (255 std), shift = -mean / std)
  float inv_std[3];     // lighting: out = y * inv_std + shift, y in [0, 1]
  at::Tensor matrices;  // contiguous float32 [B, 3, 3]
  at::Tensor lighting;  // contiguous float32 [B, 2], or undefined
  at::Tensor out;       // [B, C, out_h, out_w], allocated, every element to be written once
};

// Checks every argument, in the order and with the messages of the Python wrapper, and
// allocates the output on images' device. The lighting values are checked by the CPU backend
// (check_lighting_values), which reads them on the host anyway.
inline Plan make_plan(const at::Tensor& images, const at::Tensor& matrices, int64_t out_h,
                      int64_t out_w, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                      const c10::optional<at::Tensor>& lighting, const std::string& mode,
                      const std::string& pad_mode, at::ScalarType out_dtype, bool channels_last) {
  TORCH_CHECK_TYPE(images.scalar_type() == at::kByte, "images should be a uint8 tensor, got ",
                   dtype_name(images.scalar_type()));
  TORCH_CHECK_VALUE(images.dim() == 4, "images should be a 4d tensor [B, C, H, W], got ",
                    images.dim(), "d of shape ", images.sizes());
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  TORCH_CHECK_VALUE(C == 1 || C == 3, "images should have 1 or 3 channels, got ", C, " (shape ",
                    images.sizes(), ")");
  TORCH_CHECK_VALUE(H > 0 && W > 0, "images should have a positive height and width, got ", H, "x",
                    W);
  TORCH_CHECK_VALUE(out_h > 0 && out_w > 0, "size should be positive, got (", out_h, ", ", out_w,
                    ")");
  TORCH_CHECK_VALUE(matrices.dim() == 3 && matrices.size(1) == 3 && matrices.size(2) == 3,
                    "matrices should have shape [B, 3, 3], got ", matrices.sizes());
  TORCH_CHECK_VALUE(matrices.size(0) == B, "matrices should have one matrix per image (", B,
                    "), got ", matrices.size(0));
  TORCH_CHECK_TYPE(matrices.scalar_type() == at::kFloat,
                   "matrices should be a float32 tensor, got ", dtype_name(matrices.scalar_type()));
  TORCH_CHECK_VALUE(matrices.device() == images.device(),
                    "matrices should be on the device of images (", images.device(), "), got ",
                    matrices.device());
  TORCH_CHECK_VALUE(int64_t(mean.size()) == C, "mean should have one value per channel (", C,
                    "), got ", mean.size());
  TORCH_CHECK_VALUE(int64_t(std.size()) == C, "std should have one value per channel (", C,
                    "), got ", std.size());
  for (int64_t c = 0; c < C; ++c) {
    TORCH_CHECK_VALUE(std[c] > 0 && std::isfinite(std[c]),
                      "std should be positive and finite, got ", std[c], " for channel ", c);
    TORCH_CHECK_VALUE(std::isfinite(mean[c]), "mean should be finite, got ", mean[c],
                      " for channel ", c);
  }
  TORCH_CHECK_VALUE(out_dtype == at::kFloat || out_dtype == at::kHalf || out_dtype == at::kBFloat16,
                    "out_dtype should be torch.float32, torch.bfloat16 or torch.float16, got ",
                    dtype_name(out_dtype));
  Plan p;
  p.mode = parse_mode(mode);
  p.pad = parse_pad(pad_mode);
  if (lighting.has_value() && lighting->defined()) {
    const at::Tensor& l = *lighting;
    TORCH_CHECK_VALUE(l.dim() == 2 && l.size(0) == B && l.size(1) == 2,
                      "lighting should have shape [B, 2] = [", B,
                      ", 2] (brightness, contrast), got ", l.sizes());
    TORCH_CHECK_TYPE(l.scalar_type() == at::kFloat, "lighting should be a float32 tensor, got ",
                     dtype_name(l.scalar_type()));
    TORCH_CHECK_VALUE(l.device() == images.device(), "lighting should be on the device of images (",
                      images.device(), "), got ", l.device());
    p.lighting = l.contiguous();
  }
  TORCH_CHECK_VALUE(!images.is_cuda() || out_h <= kCudaMaxOutH, "size should have out_h at most ",
                    kCudaMaxOutH, " on CUDA, got ", out_h);
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
  p.out = at::empty({B, C, out_h, out_w}, images.options().dtype(out_dtype).memory_format(
                                              channels_last ? at::MemoryFormat::ChannelsLast
                                                            : at::MemoryFormat::Contiguous));
  return p;
}

// The lighting values of sample b on the host, l = (brightness, contrast): brightness in
// (0, 1), contrast positive and finite (the CPU backend; CUDA does not read them back).
inline void check_lighting_values(const float* l, int64_t b) {
  TORCH_CHECK_VALUE(l[0] > 0.0f && l[0] < 1.0f,
                    "lighting brightness (column 0) should be in (0, 1), got ", l[0], " for image ",
                    b);
  TORCH_CHECK_VALUE(l[1] > 0.0f && std::isfinite(l[1]),
                    "lighting contrast (column 1) should be positive and finite, got ", l[1],
                    " for image ", b);
}

}  // namespace augment
}  // namespace fastcore_ext
