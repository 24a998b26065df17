// Fused multi-tensor Adam / SGD step with a device-side one-cycle schedule: the parts shared by
// the CPU (csrc/cpu/fused_optim.cpp) and CUDA (csrc/cuda/fused_optim.cu) backends.
//
// Both backends evaluate the same closed forms in the same order: per-tensor scalars in double
// (schedule, bias corrections), then per-element float math with explicit fmas, so the AVX2
// loop, its scalar tail and the CUDA kernel produce the same bits for the same scalars. (A
// compiler may still fuse the grad scaling `g * inv_scale` into the next subtraction; with
// GradScaler's power-of-two scales that product is exact, so the bits do not change.)
// fastcore_ext/reference.py holds the readable pure-torch specification.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <math.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "macros.h"

namespace fastcore_ext {
namespace optim {

// Columns of `hyper`, float64 [G, kHyperCols]: one row per param group.
enum HyperCol : int { kLr = 0, kMom, kSqrMom, kEps, kWd, kLrMax, kHyperCols };
// Entries of `sched`, float64 [kSchedLen]: the one-cycle schedule shared by all groups.
// total_steps <= 0 means "no schedule": each group uses its own lr and mom.
enum SchedIdx : int { kTotal = 0, kDiv, kDivFinal, kPctStart, kMom0, kMom1, kMom2, kSchedLen };
// `counter`, int64 [kCounterLen]: the schedule step and a scratch word the CUDA kernel uses
// to find the last block of a launch (always 0 between launches).
enum CounterIdx : int { kStep = 0, kTicket, kCounterLen };

// fastai's SchedCos: start at t=0, end at t=1.
FCX_HD double sched_cos(double start, double end, double t) {
  constexpr double kPi = 3.14159265358979323846;
  return start + (1.0 + cos(kPi * (1.0 - t))) * (end - start) / 2.0;
}

struct LrMom {
  double lr;
  double mom;
};

// The lr and momentum of one group at schedule step `step` (the k-th step, k from 0):
// one_cycle(pos = min(k / total, 1)) when a schedule is set, else the group's own values.
// fastcore_ext/schedule.py:one_cycle is the same function on the host.
FCX_HD LrMom group_lr_mom(const double* row, const double* sched, int64_t step) {
  const double total = sched[kTotal];
  if (!(total > 0.0)) return {row[kLr], row[kMom]};
  double pos = static_cast<double>(step) / total;
  if (pos > 1.0) pos = 1.0;
  if (pos < 0.0) pos = 0.0;
  const double lr_max = row[kLrMax];
  const double pct = sched[kPctStart];
  if (pos < pct) {
    const double t = pos / pct;
    return {sched_cos(lr_max / sched[kDiv], lr_max, t), sched_cos(sched[kMom0], sched[kMom1], t)};
  }
  const double t = (pos - pct) / (1.0 - pct);
  return {sched_cos(lr_max, lr_max / sched[kDivFinal], t),
          sched_cos(sched[kMom1], sched[kMom2], t)};
}

// Per-tensor float scalars of one Adam step (AdamW with decoupled weight decay).
struct AdamScalars {
  float decay;      // 1 - lr * wd
  float b1c;        // 1 - mom: exp_avg.lerp_(grad, b1c)
  float b2;         // sqr_mom
  float b2c;        // 1 - sqr_mom
  float step_size;  // lr / (1 - mom^t)
  float rbc2;       // 1 / sqrt(1 - sqr_mom^t)
  float eps;
  float inv_scale;  // 1 / grad_scale (1 without AMP)
};

// `t` is the tensor's step count after this step (1 on its first step).
FCX_HD AdamScalars adam_scalars(const double* row, const LrMom& lm, double t, float inv_scale) {
  const double sqr_mom = row[kSqrMom];
  const double bc1 = 1.0 - pow(lm.mom, t);
  const double bc2 = 1.0 - pow(sqr_mom, t);
  AdamScalars s;
  s.decay = static_cast<float>(1.0 - lm.lr * row[kWd]);
  s.b1c = static_cast<float>(1.0 - lm.mom);
  s.b2 = static_cast<float>(sqr_mom);
  s.b2c = static_cast<float>(1.0 - sqr_mom);
  s.step_size = static_cast<float>(lm.lr / bc1);
  s.rbc2 = static_cast<float>(1.0 / sqrt(bc2));
  s.eps = static_cast<float>(row[kEps]);
  s.inv_scale = inv_scale;
  return s;
}

// Per-tensor float scalars of one SGD step (momentum, decoupled weight decay).
struct SgdScalars {
  float decay;  // 1 - lr * wd
  float mom;
  float lr;
  float inv_scale;
};

FCX_HD SgdScalars sgd_scalars(const double* row, const LrMom& lm, float inv_scale) {
  SgdScalars s;
  s.decay = static_cast<float>(1.0 - lm.lr * row[kWd]);
  s.mom = static_cast<float>(lm.mom);
  s.lr = static_cast<float>(lm.lr);
  s.inv_scale = inv_scale;
  return s;
}

// GradScaler's convention: inv_scale = float(1 / double(scale)).
FCX_HD float inverse_scale(const float* grad_scale) {
  return grad_scale ? static_cast<float>(1.0 / static_cast<double>(*grad_scale)) : 1.0f;
}

// One element of Adam. The vector loops repeat exactly these operations.
FCX_HD void adam_element(float& p, float g, float& m, float& v, const AdamScalars& s) {
  g = g * s.inv_scale;
  p = p * s.decay;
  m = fmaf(s.b1c, g - m, m);
  v = fmaf(s.b2c, g * g, v * s.b2);
  const float den = fmaf(sqrtf(v), s.rbc2, s.eps);
  p = fmaf(-s.step_size, m / den, p);
}

// One element of SGD (first step: buf is 0, so buf becomes grad exactly).
FCX_HD void sgd_element(float& p, float g, float& buf, const SgdScalars& s) {
  g = g * s.inv_scale;
  p = p * s.decay;
  buf = fmaf(s.mom, buf, g);
  p = fmaf(-s.lr, buf, p);
}

// Argument checks and grad layout shared by both backends (defined in csrc/fused_optim.cpp): every
// condition a caller can cause raises ValueError/TypeError naming the argument. `name` is the op
// name, `steps` is null for SGD.
void check_step_args(const char* name, at::TensorList params, at::TensorList grads,
                     const std::vector<at::TensorList>& states,
                     const std::vector<const char*>& state_names, const at::TensorList* steps,
                     c10::IntArrayRef groups, const at::Tensor& hyper, const at::Tensor& sched,
                     const at::Tensor& counter, const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf);

// The kernels walk param, grad and state in memory order, so each grad needs its param's
// strides. Returns the grads with every one strided otherwise (a transposed or channels_last grad
// of a contiguous param, an expanded one) copied to its param's layout, or an empty vector when
// all match (the usual step: no copy). Call after check_step_args.
std::vector<at::Tensor> conformed_grads(at::TensorList params, at::TensorList grads);

}  // namespace optim
}  // namespace fastcore_ext
