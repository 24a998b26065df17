// Kernel variants of the fused augmentation + normalization on CUDA, timed side by side, as
// llm.c keeps its kernels in dev/cuda/. The package ships one kernel, "row4"
// (csrc/cuda/augment_normalize_kernel.cuh, included here as it is); the others live here only.
//
//   1  pixel  one thread per output pixel, blocks of 32 x 8 pixels of one sample; thread 0 of
//             each block computes the sample's geometry and lighting into shared memory
//   2  row4   the production kernel: the samples' constants from one small kernel first, then
//             4 consecutive output pixels of one row per thread, 16- or 8-byte stores
//
// Every variant is validated bit for bit against the production kernel on the same inputs
// before it is timed (the production kernel itself is checked against fastcore_ext/reference.py
// by tests/test_augment_normalize.py). bench/device_check.sh builds and runs it on a GPU machine:
//
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -arch=sm_90 -Icsrc -I<torch include dirs> \
//        bench/dev/augment_normalize.cu -o augment_dev
//   ./augment_dev 1          # variant 1 (pixel); 2 = row4; no argument: every variant
//
// The problem is the lesson's batch: 64 channels_last RGB uint8 images of 160 x 160 (a presized
// cache), random affine matrices and lighting, to float32 NCHW 128 x 128, bilinear, reflection.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/augment_normalize_kernel.cuh"

using namespace fastcore_ext::augment;
using namespace fastcore_ext::augment::cuda;

#define CUDA_CHECK(call)                                                                 \
  do {                                                                                   \
    const cudaError_t err_ = (call);                                                     \
    if (err_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(err_)); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

struct SampleShared {
  double bx, cx, by, cy, bw, cw;  // the row terms b i + c, evaluated in double as on the CPU
  float ax, ay, aw;
  int affine;
  int light;  // Light
  float light_c, light_log2k;
};

// ---- variant "pixel": one thread per output pixel; thread 0 of each block computes the
// sample's constants into shared memory ---------------------------------------------------
template <typename out_t, Mode mode, Pad pad, int C>
__global__ void __launch_bounds__(kBlockX* kBlockY)
    pixel_kernel(const uint8_t* __restrict__ images, Strides4 in_s,
                 const float* __restrict__ matrices, const float* __restrict__ lighting,
                 out_t* __restrict__ out, Strides4 out_s, int64_t b_first, int64_t H, int64_t W,
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

constexpr Mode kMode = Mode::Bilinear;
constexpr Pad kPad = Pad::Reflection;
constexpr int kC = 3;

struct Problem {
  int64_t B = 64, H = 160, W = 160, out_h = 128, out_w = 128;
  Strides4 in_s, out_s;
  Norm nm;
  uint8_t* images;
  float* matrices;
  float* lighting;
  SampleParams* params;
  size_t out_elems;
};

// variant 2, the production path: sample constants, then the row kernel
void run_row4(const Problem& p, float* out) {
  sample_params_kernel<<<unsigned((p.B + 127) / 128), 128>>>(p.matrices, p.lighting, p.B, p.H, p.W,
                                                             p.out_h, p.out_w, p.params);
  const dim3 grid(unsigned((p.out_w + kBlockX * kPx - 1) / (kBlockX * kPx)),
                  unsigned((p.out_h + kBlockY - 1) / kBlockY), unsigned(p.B));
  augment_normalize_row4_kernel<float, kMode, kPad, kC><<<grid, dim3(kBlockX, kBlockY)>>>(
      p.images, p.in_s, p.params, out, p.out_s, 0, p.H, p.W, p.out_h, p.out_w, p.nm);
}

void run_pixel(const Problem& p, float* out) {
  const dim3 grid(unsigned((p.out_w + kBlockX - 1) / kBlockX),
                  unsigned((p.out_h + kBlockY - 1) / kBlockY), unsigned(p.B));
  pixel_kernel<float, kMode, kPad, kC><<<grid, dim3(kBlockX, kBlockY)>>>(
      p.images, p.in_s, p.matrices, p.lighting, out, p.out_s, 0, p.H, p.W, p.out_h, p.out_w, p.nm);
}

struct Variant {
  const char* name;
  void (*run)(const Problem&, float*);
};
const Variant kVariants[] = {{"pixel", run_pixel}, {"row4", run_row4}};
constexpr int kNumVariants = int(sizeof(kVariants) / sizeof(kVariants[0]));

int main(int argc, char** argv) {
  const int only = argc > 1 ? std::atoi(argv[1]) : 0;
  if (only < 0 || only > kNumVariants) {
    std::fprintf(stderr, "variant should be 1..%d (or nothing for all), got %s\n", kNumVariants,
                 argv[1]);
    return 2;
  }
  Problem p;
  const int64_t in_bytes = p.B * p.H * p.W * kC;
  p.in_s = {p.H * p.W * kC, 1, p.W * kC, kC};                         // channels_last
  p.out_s = {kC * p.out_h * p.out_w, p.out_h * p.out_w, p.out_w, 1};  // NCHW
  p.out_elems = size_t(p.B * kC * p.out_h * p.out_w);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  p.nm.scale =
      make_float3(1.f / (255.f * stdv[0]), 1.f / (255.f * stdv[1]), 1.f / (255.f * stdv[2]));
  p.nm.shift = make_float3(-mean[0] / stdv[0], -mean[1] / stdv[1], -mean[2] / stdv[2]);
  p.nm.inv_std = make_float3(1.f / stdv[0], 1.f / stdv[1], 1.f / stdv[2]);

  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<uint8_t> h_images(static_cast<size_t>(in_bytes));
  for (auto& v : h_images) v = uint8_t(rng() & 255);
  std::vector<float> h_m(static_cast<size_t>(9 * p.B)), h_l(static_cast<size_t>(2 * p.B));
  for (int64_t b = 0; b < p.B; ++b) {  // rotation up to 10 degrees, zoom 1-1.1, flip, shift
    const float a = (u(rng) - 0.5f) * 0.35f, z = 1.f / (1.f + 0.1f * u(rng));
    const float f = u(rng) < 0.5f ? -1.f : 1.f;
    const float m[9] = {f * z * std::cos(a),
                        -z * std::sin(a),
                        0.1f * (u(rng) - 0.5f),
                        f * z * std::sin(a),
                        z * std::cos(a),
                        0.1f * (u(rng) - 0.5f),
                        0.f,
                        0.f,
                        1.f};
    std::memcpy(&h_m[size_t(9 * b)], m, sizeof m);
    h_l[size_t(2 * b)] = 0.3f + 0.4f * u(rng);
    h_l[size_t(2 * b + 1)] = 0.7f + 0.7f * u(rng);
  }
  CUDA_CHECK(cudaMalloc(&p.images, size_t(in_bytes)));
  CUDA_CHECK(cudaMalloc(&p.matrices, h_m.size() * sizeof(float)));
  CUDA_CHECK(cudaMalloc(&p.lighting, h_l.size() * sizeof(float)));
  CUDA_CHECK(cudaMalloc(&p.params, size_t(p.B) * sizeof(SampleParams)));
  CUDA_CHECK(cudaMemcpy(p.images, h_images.data(), size_t(in_bytes), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(p.matrices, h_m.data(), h_m.size() * 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(p.lighting, h_l.data(), h_l.size() * 4, cudaMemcpyHostToDevice));
  float *ref, *out;
  CUDA_CHECK(cudaMalloc(&ref, p.out_elems * sizeof(float)));
  CUDA_CHECK(cudaMalloc(&out, p.out_elems * sizeof(float)));
  run_row4(p, ref);
  CUDA_CHECK(cudaGetLastError());
  std::vector<float> h_ref(p.out_elems), h_out(p.out_elems);
  CUDA_CHECK(cudaMemcpy(h_ref.data(), ref, p.out_elems * 4, cudaMemcpyDeviceToHost));

  const double bytes = double(in_bytes) + double(p.out_elems) * sizeof(float);
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::printf("%-8s %10s %10s  %s\n", "variant", "us/call", "GB/s", "vs production");
  int failed = 0;
  for (int v = 1; v <= kNumVariants; ++v) {
    if (only != 0 && v != only) continue;
    const Variant& var = kVariants[v - 1];
    CUDA_CHECK(cudaMemset(out, 0xFF, p.out_elems * sizeof(float)));  // NaN: unwritten fails
    var.run(p, out);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaMemcpy(h_out.data(), out, p.out_elems * 4, cudaMemcpyDeviceToHost));
    if (std::memcmp(h_out.data(), h_ref.data(), p.out_elems * sizeof(float)) != 0) {
      size_t i = 0;
      while (std::memcmp(&h_out[i], &h_ref[i], sizeof(float)) == 0) ++i;
      std::printf("%-8s validation FAILED at element %zu: %g vs %g\n", var.name, i, h_out[i],
                  h_ref[i]);
      failed = 1;
      continue;
    }
    for (int w = 0; w < 10; ++w) var.run(p, out);
    const int iters = 200;
    CUDA_CHECK(cudaEventRecord(start));
    for (int it = 0; it < iters; ++it) var.run(p, out);
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double us = 1e3 * double(ms) / iters;
    std::printf("%-8s %10.2f %10.1f  bit-identical\n", var.name, us, bytes / (us * 1e3));
  }
  return failed;
}
