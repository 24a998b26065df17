// The argument checks of the fused optimizer ops, run by both backends (csrc/cpu/fused_optim.cpp,
// csrc/cuda/fused_optim.cu) before anything is read or written. The Python optimizer
// (fastcore_ext/optim.py) only ever passes arguments that pass them; these guard callers of
// torch.ops.fastcore_ext.fused_adam_ / fused_sgd_.
#include "fused_optim.h"

#include <ATen/ATen.h>

#include <utility>

#include "checks.h"

namespace fastcore_ext {
namespace optim {

void check_step_args(const char* name, at::TensorList params, at::TensorList grads,
                     const std::vector<at::TensorList>& states,
                     const std::vector<const char*>& state_names, const at::TensorList* steps,
                     c10::IntArrayRef groups, const at::Tensor& hyper, const at::Tensor& sched,
                     const at::Tensor& counter, const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf) {
  const int64_t n = static_cast<int64_t>(params.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(grads.size()) == n, name, ": grads should have ", n,
                    " tensors (one per param), got ", grads.size());
  for (size_t k = 0; k < states.size(); ++k) {
    TORCH_CHECK_VALUE(static_cast<int64_t>(states[k].size()) == n, name, ": ", state_names[k],
                      " should have ", n, " tensors (one per param), got ", states[k].size());
  }
  if (steps) {
    TORCH_CHECK_VALUE(static_cast<int64_t>(steps->size()) == n, name, ": steps should have ", n,
                      " tensors (one per param), got ", steps->size());
  }
  TORCH_CHECK_VALUE(static_cast<int64_t>(groups.size()) == n, name, ": groups should have ", n,
                    " entries (one per param), got ", groups.size());
  TORCH_CHECK_TYPE(hyper.scalar_type() == at::kDouble, name, ": hyper should be float64, got ",
                   dtype_name(hyper.scalar_type()));
  TORCH_CHECK_VALUE(hyper.dim() == 2 && hyper.size(1) == kHyperCols && hyper.is_contiguous(), name,
                    ": hyper should be a contiguous [groups, ", int(kHyperCols),
                    "] tensor, got shape ", hyper.sizes());
  TORCH_CHECK_TYPE(sched.scalar_type() == at::kDouble, name, ": sched should be float64, got ",
                   dtype_name(sched.scalar_type()));
  TORCH_CHECK_VALUE(sched.dim() == 1 && sched.size(0) == kSchedLen && sched.is_contiguous(), name,
                    ": sched should be a contiguous [", int(kSchedLen), "] tensor, got shape ",
                    sched.sizes());
  TORCH_CHECK_TYPE(counter.scalar_type() == at::kLong, name, ": counter should be int64, got ",
                   dtype_name(counter.scalar_type()));
  TORCH_CHECK_VALUE(counter.dim() == 1 && counter.size(0) == kCounterLen && counter.is_contiguous(),
                    name, ": counter should be a contiguous [", int(kCounterLen),
                    "] tensor, got shape ", counter.sizes());
  const auto device = hyper.device();
  TORCH_CHECK_VALUE(sched.device() == device && counter.device() == device, name,
                    ": hyper, sched and counter should be on one device, got ", device, ", ",
                    sched.device(), " and ", counter.device());
  const std::pair<const std::optional<at::Tensor>*, const char*> scalars[] = {
      {&grad_scale, "grad_scale"}, {&found_inf, "found_inf"}};
  for (const auto& [opt, what] : scalars) {
    if (!opt->has_value()) continue;
    const at::Tensor& t = opt->value();
    TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, name, ": ", what, " should be float32, got ",
                     dtype_name(t.scalar_type()));
    TORCH_CHECK_VALUE(t.numel() == 1, name, ": ", what, " should have one element, got ",
                      t.numel());
    TORCH_CHECK_VALUE(t.device() == device, name, ": ", what, " should be on ", device, ", got ",
                      t.device());
  }
  const int64_t num_groups = hyper.size(0);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& g = grads[i];
    TORCH_CHECK_TYPE(p.layout() == at::kStrided, name, ": params[", i,
                     "] should be a dense (strided) tensor, got layout ", p.layout());
    TORCH_CHECK_TYPE(g.layout() == at::kStrided, name, ": grads[", i,
                     "] should be dense (strided), got layout ", g.layout(),
                     " (sparse gradients are not supported)");
    const auto dt = p.scalar_type();
    TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, name, ": params[",
                     i, "] should be float32, bfloat16 or float16, got ", dtype_name(dt));
    TORCH_CHECK_TYPE(g.scalar_type() == dt, name, ": grads[", i, "] should have its param's dtype ",
                     dtype_name(dt), ", got ", dtype_name(g.scalar_type()));
    TORCH_CHECK_VALUE(p.device() == device && g.device() == device, name, ": params[", i,
                      "] and grads[", i, "] should be on ", device, ", got ", p.device(), " and ",
                      g.device());
    TORCH_CHECK_VALUE(p.is_non_overlapping_and_dense(), name, ": params[", i,
                      "] should be non-overlapping and dense (contiguous, channels_last, "
                      "transposed...), got sizes ",
                      p.sizes(), " and strides ", p.strides());
    TORCH_CHECK_VALUE(g.sizes() == p.sizes(), name, ": grads[", i,
                      "] should have its param's sizes ", p.sizes(), ", got ", g.sizes());
    for (size_t k = 0; k < states.size(); ++k) {
      const at::Tensor& s = states[k][i];
      TORCH_CHECK_TYPE(s.scalar_type() == at::kFloat, name, ": ", state_names[k], "[", i,
                       "] should be float32, got ", dtype_name(s.scalar_type()));
      TORCH_CHECK_VALUE(s.device() == device, name, ": ", state_names[k], "[", i, "] should be on ",
                        device, ", got ", s.device());
      TORCH_CHECK_VALUE(s.sizes() == p.sizes() && s.strides() == p.strides(), name, ": ",
                        state_names[k], "[", i, "] should have its param's sizes ", p.sizes(),
                        " and strides ", p.strides(), ", got ", s.sizes(), " and ", s.strides());
    }
    if (steps) {
      const at::Tensor& st = (*steps)[i];
      TORCH_CHECK_TYPE(st.scalar_type() == at::kFloat, name, ": steps[", i,
                       "] should be float32, got ", dtype_name(st.scalar_type()));
      TORCH_CHECK_VALUE(st.numel() == 1 && st.device() == device, name, ": steps[", i,
                        "] should be one element on ", device, ", got ", st.numel(),
                        " elements on ", st.device());
    }
    TORCH_CHECK_VALUE(groups[i] >= 0 && groups[i] < num_groups, name, ": groups[", i,
                      "] should be in [0, ", num_groups, "), got ", groups[i]);
  }
}

std::vector<at::Tensor> conformed_grads(at::TensorList params, at::TensorList grads) {
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < params.size(); ++i) {
    if (grads[i].strides() == params[i].strides()) continue;
    if (out.empty()) out.assign(grads.begin(), grads.end());
    out[i] = at::empty_like(params[i]).copy_(grads[i]);  // the param's strides (it is dense)
  }
  return out;
}

}  // namespace optim
}  // namespace fastcore_ext
