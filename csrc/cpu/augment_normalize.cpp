// Kernel 1 on the CPU: fused augmentation + normalization (see csrc/augment_normalize.h and
// fastcore_ext/reference.py for the specification).
//
// Parallel over output rows of the whole batch (at::parallel_for over B * out_h); each row is
// sampled into a small float buffer, then lit, normalized and stored in the output dtype and
// layout (augment_normalize_rows.h). The row kernel is compiled twice: for AVX2 + FMA + F16C
// (8 output pixels per vector; the taps of a pixel come from one 8-byte load per input row,
// spread into channel vectors with byte shuffles: cheaper than AVX2 gathers on Zen 3) and
// portably (one pixel at a time); the AVX2 build runs when the CPU has those and the input
// offsets of a sample fit in int32. The environment variable
// FASTCORE_EXT_AUGMENT_CPU=portable|avx2|auto (read on every call) forces one of them, for tests
// and comparisons.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "augment_normalize_args.h"
#include "cpu/augment_normalize_simd.h"
#include "cpu/cpu_features.h"

namespace fastcore_ext {
namespace augment {
namespace cpu {
namespace {

struct SampleJob {
  SampleSource src;
  Geometry geo;
  LightParams light;
  bool safe;  // every 8-byte read of the sample is inside images
};

struct Job {
  const Plan* plan;
  Load load;
  alignas(32) int8_t masks[3][32];  // byte-shuffle masks of the AVX2 loads
  std::vector<SampleJob> samples;
  void* out;
  int64_t out_sB, out_sC, out_sH, out_sW;  // output strides in elements
};

namespace portable {
using Ops = ScalarOps;
#include "cpu/augment_normalize_rows.h"
}  // namespace portable

#if FCX_X86_SIMD
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
namespace avx2 {
using Ops = Avx2Ops;
#include "cpu/augment_normalize_rows.h"
}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

enum class Path { Auto, Avx2, Portable };

Path requested_path() {
  const char* env = std::getenv("FASTCORE_EXT_AUGMENT_CPU");
  if (env == nullptr || env[0] == '\0') return Path::Auto;
  const std::string v(env);
  if (v == "auto") return Path::Auto;
  if (v == "avx2") return Path::Avx2;
  if (v == "portable") return Path::Portable;
  TORCH_CHECK_VALUE(false, "FASTCORE_EXT_AUGMENT_CPU should be 'auto', 'avx2' or 'portable', got '",
                    v, "'");
}

at::Tensor augment_normalize_cpu(const at::Tensor& images, const at::Tensor& matrices,
                                 int64_t out_h, int64_t out_w, at::ArrayRef<double> mean,
                                 at::ArrayRef<double> std,
                                 const c10::optional<at::Tensor>& lighting, c10::string_view mode,
                                 c10::string_view pad_mode, at::ScalarType out_dtype,
                                 bool channels_last) {
  TORCH_INTERNAL_ASSERT(images.device().is_cpu(), "dispatched to the CPU kernel with ",
                        images.device());
  Plan plan = make_plan(images, matrices, out_h, out_w, mean, std, lighting, std::string(mode),
                        std::string(pad_mode), out_dtype, channels_last);
  const int64_t B = plan.B, C = plan.C, H = plan.H, W = plan.W;
  if (plan.out.numel() == 0) return plan.out;

  const int64_t sB = images.stride(0), sC = images.stride(1), sH = images.stride(2),
                sW = images.stride(3);
  // Bytes from images.data_ptr() (the lowest address: torch strides are >= 0) to one past
  // the last byte of images.
  const int64_t extent = 1 + (B - 1) * sB + (C - 1) * sC + (H - 1) * sH + (W - 1) * sW;
  const int64_t sample_extent = 1 + (C - 1) * sC + (H - 1) * sH + (W - 1) * sW;

  Job job;
  job.plan = &plan;
  job.out = plan.out.data_ptr();
  job.out_sB = plan.out.stride(0);
  job.out_sC = plan.out.stride(1);
  job.out_sH = plan.out.stride(2);
  job.out_sW = plan.out.stride(3);
  TORCH_INTERNAL_ASSERT(job.out_sW == 1 || (C == 3 && job.out_sW == 3 && job.out_sC == 1));
  // The AVX2 load layout (see Load) and the byte positions it takes out of each word.
  std::memset(job.masks, 0, sizeof job.masks);
#if FCX_X86_SIMD
  const int64_t chan_span = (C - 1) * sC;  // byte of the last channel, from the first
  auto mask = [&](int k, int64_t k1, int64_t k2) {
    Avx2Ops::shuffle_mask(int(k1), int(k2), job.masks[k]);
  };
  if (plan.mode == Mode::Bilinear && chan_span + sW <= 7) {
    job.load = Load::Word1;
    for (int64_t c = 0; c < C; ++c) mask(int(c), c * sC, c * sC + sW);
  } else if (plan.mode == Mode::Nearest && chan_span <= 7) {
    job.load = Load::Word1;
    mask(0, 0, C == 3 ? sC : 0);
    mask(1, 2 * sC, 2 * sC);
  } else if (plan.mode == Mode::Bilinear && sW <= 7) {
    job.load = Load::WordPerChannel;
    mask(0, 0, sW);
  } else {
    job.load = Load::WordPerTap;
    mask(0, 0, 0);
  }
#else
  job.load = Load::WordPerTap;
#endif

  const float* m = plan.matrices.data_ptr<float>();
  const float* l = plan.lighting.defined() ? plan.lighting.data_ptr<float>() : nullptr;
  const uint8_t* data = images.data_ptr<uint8_t>();
  job.samples.resize(size_t(B));
  for (int64_t b = 0; b < B; ++b) {
    SampleJob& s = job.samples[size_t(b)];
    s.src.base = data + b * sB;
    s.src.sH = sH;
    s.src.sW = sW;
    s.src.sC = sC;
    // An 8-byte read at base + o stays inside images for o <= extent - 8 - b sB.
    s.src.lim8 = extent - 8 - b * sB;
    s.src.masks = job.masks;
    s.safe = sample_extent - 1 <= s.src.lim8;
    s.geo = make_geometry(m + 9 * b, H, W, out_h, out_w);
    if (l != nullptr) {
      check_lighting_values(l + 2 * b, b);
      s.light = make_light(l[2 * b], l[2 * b + 1]);
    } else {
      s.light = LightParams{Light::None, 1.0f, 0.0f};
    }
  }

  bool use_avx2 = false;
#if FCX_X86_SIMD
  const bool avx2_possible = fastcore_ext::cpu::has_avx2_fma_f16c() && extent >= 8 &&
                             sample_extent + 8 <= std::numeric_limits<int32_t>::max();
#else
  const bool avx2_possible = false;
#endif
  switch (requested_path()) {
    case Path::Auto:
      use_avx2 = avx2_possible;
      break;
    case Path::Avx2:
      TORCH_CHECK_VALUE(
          avx2_possible,
          "FASTCORE_EXT_AUGMENT_CPU=avx2 but the AVX2 path cannot run here (it needs a "
          "CPU with AVX2, FMA and F16C, at least 8 bytes of images and in-sample offsets "
          "below 2^31)");
      use_avx2 = true;
      break;
    case Path::Portable:
      use_avx2 = false;
      break;
  }

  const int64_t rows = B * out_h;
  const int64_t grain = std::max<int64_t>(1, 16384 / (out_w * C));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
#if FCX_X86_SIMD
    if (use_avx2) {
      avx2::run(job, begin, end);
      return;
    }
#endif
    portable::run(job, begin, end);
  });
  return plan.out;
}

}  // namespace
}  // namespace cpu
}  // namespace augment
}  // namespace fastcore_ext

TORCH_LIBRARY_IMPL(fastcore_ext, CPU, m) {
  m.impl("augment_normalize", &fastcore_ext::augment::cpu::augment_normalize_cpu);
}
