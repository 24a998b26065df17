// Fused Adam / SGD step on CUDA: one launch for all groups and tensors.
//
// Every tensor is cut into kChunk-element chunks; each block takes a contiguous run of the
// launch's chunks and finds a chunk's tensor by binary search over the chunk-start table.
// The table, the pointers, the group of each tensor and its dtype travel as one kernel
// parameter (a __grid_constant__ struct of up to kMaxTensors tensors, about 22 KB: CUDA 12.1+
// allows 32 KB of parameters on sm_70+); a model with more tensors gets one launch per
// kMaxTensors. Hyperparameters, the schedule and the step counter are read from device
// memory, so nothing is synchronized with the host and a captured CUDA graph keeps following
// the schedule on replay.
//
// The counters advance once every block has read them: each block takes a ticket
// (counter[kTicket]) after its last chunk, and the block that takes the last ticket increments
// the per-tensor steps and the schedule step, then resets the ticket to 0. A step skipped by
// GradScaler (found_inf) advances the schedule step only.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>

#include "fused_optim.h"

namespace fastcore_ext {
namespace optim {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 8192;  // elements per chunk (a multiple of 4)
constexpr int kUnroll = 2;        // 4-element vectors in flight per thread and stream
constexpr int kMaxTensors = 384;  // tensors per launch
constexpr int kBlocksPerSm = 8;   // grid cap: 2048 threads per SM

enum DType : uint8_t { kF32 = 0, kBF16, kF16 };

struct LaunchList {
  void* p[kMaxTensors];
  const void* g[kMaxTensors];
  float* s0[kMaxTensors];
  float* s1[kMaxTensors];    // second state (Adam's exp_avg_sq), null for SGD
  float* step[kMaxTensors];  // per-tensor step counts (Adam), null for SGD
  int64_t numel[kMaxTensors];
  int32_t chunk_start[kMaxTensors + 1];  // chunk_start[n] = chunks in this launch
  int32_t group[kMaxTensors];
  uint8_t dtype[kMaxTensors];
  int32_t n;
};
static_assert(sizeof(LaunchList) + 64 <= 32764, "kernel parameters must fit in 32764 bytes");

// ---- 4-element loads and stores of params/grads (16 bytes in fp32, 8 in bf16/fp16) ----

__device__ __forceinline__ void load4(const float* x, float (&r)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(x);
  r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
}
template <typename P>
__device__ __forceinline__ void load4(const P* x, float (&r)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(x);
  const P* h = reinterpret_cast<const P*>(&u);
#pragma unroll
  for (int e = 0; e < 4; ++e) r[e] = static_cast<float>(h[e]);
}
// Explicit 16/8-byte stores: written as plain assignments, nvcc 13 split some of them into
// 4-byte stores (seen in the SASS); __stwb gives STG.128.STRONG.SM, the PTX below plain STG.128.
__device__ __forceinline__ void store4(float* x, const float (&r)[4]) {
  asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(x), "f"(r[0]), "f"(r[1]), "f"(r[2]),
               "f"(r[3])
               : "memory");
}
template <typename P>
__device__ __forceinline__ void store4(P* x, const float (&r)[4]) {
  uint2 u;
  P* h = reinterpret_cast<P*>(&u);
#pragma unroll
  for (int e = 0; e < 4; ++e) h[e] = static_cast<P>(r[e]);
  asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(x), "r"(u.x), "r"(u.y) : "memory");
}

__device__ __forceinline__ bool aligned(const void* ptr, int bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// ---- the two algorithms ----

struct AdamOp {
  using Scalars = AdamScalars;
  static constexpr int kStates = 2;
  __device__ static Scalars scalars(const double* row, const LrMom& lm, const float* step,
                                    float inv_scale) {
    return adam_scalars(row, lm, static_cast<double>(*step) + 1.0, inv_scale);
  }
  __device__ static void element(float& p, float g, float* s, const Scalars& sc) {
    adam_element(p, g, s[0], s[1], sc);
  }
};

struct SgdOp {
  using Scalars = SgdScalars;
  static constexpr int kStates = 1;
  __device__ static Scalars scalars(const double* row, const LrMom& lm, const float*,
                                    float inv_scale) {
    return sgd_scalars(row, lm, inv_scale);
  }
  __device__ static void element(float& p, float g, float* s, const Scalars& sc) {
    sgd_element(p, g, s[0], sc);
  }
};

// Elements [base, base + n) of tensor t: 4-element vectors when every stream is aligned for
// them, then a scalar tail (or scalars only).
template <class Op, typename P>
__device__ void process(const LaunchList& tl, int t, int64_t base, int64_t n,
                        const typename Op::Scalars& sc) {
  P* __restrict__ p = static_cast<P*>(tl.p[t]) + base;
  const P* __restrict__ g = static_cast<const P*>(tl.g[t]) + base;
  float* __restrict__ st[Op::kStates];
  st[0] = tl.s0[t] + base;
  if constexpr (Op::kStates > 1) st[1] = tl.s1[t] + base;
  bool vec = aligned(p, 4 * sizeof(P)) && aligned(g, 4 * sizeof(P));
#pragma unroll
  for (int k = 0; k < Op::kStates; ++k) vec = vec && aligned(st[k], 16);
  const int64_t nvec = vec ? n / 4 : 0;
  for (int64_t i0 = threadIdx.x; i0 < nvec; i0 += kThreads * kUnroll) {
    float rp[kUnroll][4], rg[kUnroll][4], rs[kUnroll][Op::kStates][4];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = i0 + u * kThreads;
      if (i < nvec) {
        load4(p + 4 * i, rp[u]);
        load4(g + 4 * i, rg[u]);
#pragma unroll
        for (int k = 0; k < Op::kStates; ++k) load4(st[k] + 4 * i, rs[u][k]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = i0 + u * kThreads;
      if (i < nvec) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float s[Op::kStates];
#pragma unroll
          for (int k = 0; k < Op::kStates; ++k) s[k] = rs[u][k][e];
          Op::element(rp[u][e], rg[u][e], s, sc);
#pragma unroll
          for (int k = 0; k < Op::kStates; ++k) rs[u][k][e] = s[k];
        }
        store4(p + 4 * i, rp[u]);
#pragma unroll
        for (int k = 0; k < Op::kStates; ++k) store4(st[k] + 4 * i, rs[u][k]);
      }
    }
  }
  for (int64_t i = nvec * 4 + threadIdx.x; i < n; i += kThreads) {
    float pf = static_cast<float>(p[i]);
    float s[Op::kStates];
#pragma unroll
    for (int k = 0; k < Op::kStates; ++k) s[k] = st[k][i];
    Op::element(pf, static_cast<float>(g[i]), s, sc);
#pragma unroll
    for (int k = 0; k < Op::kStates; ++k) st[k][i] = s[k];
    p[i] = static_cast<P>(pf);
  }
}

// The largest t in [0, n] with chunk_start[t] <= c: the tensor holding chunk c (empty tensors
// share their start with the next one, so they are never found).
__device__ int find_tensor(const LaunchList& tl, int32_t c) {
  int lo = 0, hi = tl.n;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tl.chunk_start[mid] <= c) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

template <class Op>
__global__ void __launch_bounds__(kThreads)
    fused_step_kernel(const __grid_constant__ LaunchList tl, const double* __restrict__ hyper,
                      const double* __restrict__ sched, int64_t* counter, const float* grad_scale,
                      const float* found_inf, bool advance) {
  if (found_inf != nullptr && *found_inf != 0.0f) {
    // GradScaler found inf/NaN: nothing changes (the tensors' step counts included), but the
    // schedule position counts the batch. No block reads counter[kStep] on this path.
    if (advance && blockIdx.x == 0 && threadIdx.x == 0) counter[kStep] += 1;
    return;
  }
  __shared__ typename Op::Scalars sh_sc;
  __shared__ bool sh_last;
  // Block b takes the contiguous chunks [b * per_block, (b + 1) * per_block): consecutive
  // chunks mostly share a tensor, whose scalars are then computed once.
  const int64_t chunks = tl.chunk_start[tl.n];
  const int64_t per_block = (chunks + gridDim.x - 1) / gridDim.x;
  const int64_t c_end = min(chunks, (blockIdx.x + 1) * per_block);
  typename Op::Scalars sc;
  int last_t = -1;
  for (int64_t c = blockIdx.x * per_block; c < c_end; ++c) {
    const int t = find_tensor(tl, static_cast<int32_t>(c));  // the same in every thread
    if (t != last_t) {
      __syncthreads();  // everyone has read the previous sh_sc
      if (threadIdx.x == 0) {
        const double* row = hyper + static_cast<int64_t>(tl.group[t]) * kHyperCols;
        const LrMom lm = group_lr_mom(row, sched, counter[kStep]);
        sh_sc = Op::scalars(row, lm, tl.step[t], inverse_scale(grad_scale));
      }
      __syncthreads();
      sc = sh_sc;
      last_t = t;
    }
    const int64_t base = static_cast<int64_t>(c - tl.chunk_start[t]) * kChunk;
    const int64_t rest = tl.numel[t] - base;
    const int64_t n = rest < kChunk ? rest : kChunk;
    switch (tl.dtype[t]) {
      case kF32:
        process<Op, float>(tl, t, base, n, sc);
        break;
      case kBF16:
        process<Op, c10::BFloat16>(tl, t, base, n, sc);
        break;
      default:
        process<Op, c10::Half>(tl, t, base, n, sc);
        break;
    }
  }
  // Advance the counters once every block has read them.
  __syncthreads();
  unsigned long long* ticket = reinterpret_cast<unsigned long long*>(counter + kTicket);
  if (threadIdx.x == 0) {
    __threadfence();
    sh_last = atomicAdd(ticket, 1ULL) == gridDim.x - 1;
  }
  __syncthreads();
  if (!sh_last) return;
  __threadfence();
  for (int i = threadIdx.x; i < tl.n; i += kThreads) {
    if (tl.step[i] != nullptr) *tl.step[i] += 1.0f;
  }
  if (threadIdx.x == 0) {
    if (advance) counter[kStep] += 1;
    *ticket = 0;
  }
}

uint8_t dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return kF32;
    case at::kBFloat16:
      return kBF16;
    default:
      return kF16;  // check_step_args allows float32, bfloat16 and float16 only
  }
}

// Launches over groups of at most kMaxTensors tensors; only the last advances the schedule.
template <class Op>
void launch_all(at::TensorList params, at::TensorList grads, at::TensorList s0,
                const at::TensorList* s1, const at::TensorList* steps, c10::IntArrayRef groups,
                const at::Tensor& hyper, const at::Tensor& sched, const at::Tensor& counter,
                const std::optional<at::Tensor>& grad_scale,
                const std::optional<at::Tensor>& found_inf) {
  const c10::cuda::CUDAGuard guard(hyper.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t max_blocks =
      static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) *
      kBlocksPerSm;
  const float* scale = grad_scale.has_value() ? grad_scale->data_ptr<float>() : nullptr;
  const float* inf = found_inf.has_value() ? found_inf->data_ptr<float>() : nullptr;
  const int64_t n = static_cast<int64_t>(params.size());
  int64_t first = 0;
  do {
    const int count = static_cast<int>(std::min<int64_t>(kMaxTensors, n - first));
    LaunchList tl;
    tl.n = count;
    int64_t chunks = 0;
    for (int j = 0; j < count; ++j) {
      const int64_t i = first + j;
      tl.p[j] = params[i].data_ptr();
      tl.g[j] = grads[i].data_ptr();
      tl.s0[j] = s0[i].data_ptr<float>();
      tl.s1[j] = s1 ? (*s1)[i].data_ptr<float>() : nullptr;
      tl.step[j] = steps ? (*steps)[i].data_ptr<float>() : nullptr;
      tl.numel[j] = params[i].numel();
      tl.group[j] = static_cast<int32_t>(groups[i]);
      tl.dtype[j] = dtype_code(params[i].scalar_type());
      tl.chunk_start[j] = static_cast<int32_t>(chunks);
      chunks += (tl.numel[j] + kChunk - 1) / kChunk;
      TORCH_CHECK_VALUE(chunks <= INT32_MAX, "fused optimizer step: too many elements in one ",
                        "launch (", chunks, " chunks of ", kChunk, ")");
    }
    tl.chunk_start[count] = static_cast<int32_t>(chunks);
    const bool advance = first + count == n;
    // At most max_blocks blocks, each with the same number of chunks.
    const int64_t per_block = std::max<int64_t>(1, (chunks + max_blocks - 1) / max_blocks);
    const unsigned blocks =
        static_cast<unsigned>(std::max<int64_t>(1, (chunks + per_block - 1) / per_block));
    fused_step_kernel<Op>
        <<<blocks, kThreads, 0, stream>>>(tl, hyper.data_ptr<double>(), sched.data_ptr<double>(),
                                          counter.data_ptr<int64_t>(), scale, inf, advance);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    first += count;
  } while (first < n);
}

void fused_adam_cuda(at::TensorList params, at::TensorList grads_in, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, at::TensorList steps, c10::IntArrayRef groups,
                     const at::Tensor& hyper, const at::Tensor& sched, const at::Tensor& counter,
                     const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf) {
  check_step_args("fused_adam_", params, grads_in, {exp_avgs, exp_avg_sqs},
                  {"exp_avgs", "exp_avg_sqs"}, &steps, groups, hyper, sched, counter, grad_scale,
                  found_inf);
  const std::vector<at::Tensor> conformed = conformed_grads(params, grads_in);
  const at::TensorList grads = conformed.empty() ? grads_in : at::TensorList(conformed);
  launch_all<AdamOp>(params, grads, exp_avgs, &exp_avg_sqs, &steps, groups, hyper, sched, counter,
                     grad_scale, found_inf);
}

void fused_sgd_cuda(at::TensorList params, at::TensorList grads_in, at::TensorList momentum_buffers,
                    c10::IntArrayRef groups, const at::Tensor& hyper, const at::Tensor& sched,
                    const at::Tensor& counter, const std::optional<at::Tensor>& grad_scale,
                    const std::optional<at::Tensor>& found_inf) {
  check_step_args("fused_sgd_", params, grads_in, {momentum_buffers}, {"momentum_buffers"}, nullptr,
                  groups, hyper, sched, counter, grad_scale, found_inf);
  const std::vector<at::Tensor> conformed = conformed_grads(params, grads_in);
  const at::TensorList grads = conformed.empty() ? grads_in : at::TensorList(conformed);
  launch_all<SgdOp>(params, grads, momentum_buffers, nullptr, nullptr, groups, hyper, sched,
                    counter, grad_scale, found_inf);
}

}  // namespace
}  // namespace optim
}  // namespace fastcore_ext

TORCH_LIBRARY_IMPL(fastcore_ext, CUDA, m) {
  m.impl("fused_adam_", &fastcore_ext::optim::fused_adam_cuda);
  m.impl("fused_sgd_", &fastcore_ext::optim::fused_sgd_cuda);
}
