// Kernel 1 on CUDA: fused augmentation + normalization, the op. The kernels are in
// augment_normalize_kernel.cuh (shared with the variants timed in bench/dev/); this file checks
// the arguments (augment_normalize_args.h), computes every sample's constants on the device and
// launches the row kernel for the dtype, mode, padding and channel count of the call.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <string>

#include "augment_normalize_args.h"
#include "cuda/augment_normalize_kernel.cuh"

namespace fastcore_ext {
namespace augment {
namespace cuda {
namespace {

static_assert(kBlockY == kCudaBlockY, "the out_h limit of augment_normalize_args.h");

struct Launch {
  int64_t b_first;
  dim3 grid;
  const SampleParams* params;
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
  augment_normalize_row4_kernel<out_t, mode, pad, C>
      <<<l.grid, block, 0, l.stream>>>(images.data_ptr<uint8_t>(), in_s, l.params, out, out_s,
                                       l.b_first, p.H, p.W, p.out_h, p.out_w, nm);
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
                                  const c10::optional<at::Tensor>& lighting, c10::string_view mode,
                                  c10::string_view pad_mode, at::ScalarType out_dtype,
                                  bool channels_last) {
  TORCH_INTERNAL_ASSERT(images.is_cuda(), "dispatched to the CUDA kernel with ", images.device());
  const c10::cuda::CUDAGuard device_guard(images.device());
  Plan plan = make_plan(images, matrices, out_h, out_w, mean, std, lighting, std::string(mode),
                        std::string(pad_mode), out_dtype, channels_last);
  if (plan.out.numel() == 0) return plan.out;
  Launch l;
  l.stream = at::cuda::getCurrentCUDAStream();
  // [B] SampleParams, computed on the device from matrices and lighting
  static_assert(sizeof(SampleParams) % 8 == 0, "SampleParams: whole doubles");
  const at::Tensor params =
      at::empty({plan.B * int64_t(sizeof(SampleParams) / 8)}, images.options().dtype(at::kDouble));
  auto* pp = reinterpret_cast<SampleParams*>(params.data_ptr<double>());
  const float* light = plan.lighting.defined() ? plan.lighting.data_ptr<float>() : nullptr;
  const int threads = 128;
  const unsigned blocks = unsigned((plan.B + threads - 1) / threads);
  sample_params_kernel<<<blocks, threads, 0, l.stream>>>(plan.matrices.data_ptr<float>(), light,
                                                         plan.B, plan.H, plan.W, out_h, out_w, pp);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  l.params = pp;
  const int64_t px_per_block_x = int64_t(kBlockX) * kPx;
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
