// fastcore_ext: every custom op's schema, declared in one place.
//
// Backends register implementations in csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu with
// TORCH_LIBRARY_IMPL(fastcore_ext, CPU|CUDA, m). Python calls them as
// torch.ops.fastcore_ext.<op> through the typed wrappers in fastcore_ext/ops.py, which also
// registers their fake (meta) implementations for torch.compile.
#include <Python.h>
#include <torch/library.h>

// Importing fastcore_ext._C loads this library, whose static initializers register the ops.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C",
      "fastcore_ext compiled kernels (ops under torch.ops.fastcore_ext)", -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(fastcore_ext, m) {
  // ---- Kernel 1: fused augmentation + normalization (csrc/*/augment_normalize.*) ----
  // images uint8 [B, C, H, W] (any strides), matrices float32 [B, 3, 3] (output -> input,
  // normalized coordinates, align_corners=False), lighting float32 [B, 2] or None.
  // mode: "bilinear" | "nearest"; pad_mode: "zeros" | "border" | "reflection".
  // Returns out_dtype [B, C, out_h, out_w], NCHW-contiguous or channels_last.
  m.def(
      "augment_normalize(Tensor images, Tensor matrices, int out_h, int out_w, float[] mean, "
      "float[] std, Tensor? lighting, str mode, str pad_mode, ScalarType out_dtype, "
      "bool channels_last) -> Tensor");

  // ---- Kernel 2: fused multi-tensor optimizer step with the one-cycle schedule ----
  // (csrc/fused_optim.h, csrc/*/fused_optim.*; spec: fastcore_ext/reference.py)
  // One step of every listed tensor: params float32/bfloat16/float16 (non-overlapping and
  // dense), grads of the same dtype and sizes (never written; one strided unlike its param is
  // copied to the param's layout first), float32 state of the params' sizes and strides. groups[i]
  // is the row of params[i] in hyper, float64 [G, 6] = (lr, mom, sqr_mom, eps, wd, lr_max); sched
  // float64 [7] = (total_steps, div, div_final, pct_start, mom0, mom1, mom2), total_steps <= 0
  // meaning "no schedule"; counter int64 [2] = (schedule step, 0). With a schedule, each group's lr
  // and mom are the one-cycle values at counter[0] / total_steps. grad_scale (float32, 1 element):
  // grads are divided by it. counter[0] is the schedule position: it advances by one at every call
  // (one training batch). found_inf (float32, 1 element) nonzero: nothing else changes (a skipped
  // step). Otherwise every steps[i] (the update count of Adam's bias correction) advances by one
  // too.
  m.def(
      "fused_adam_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, "
      "Tensor(c!)[] exp_avg_sqs, Tensor(d!)[] steps, int[] groups, Tensor hyper, Tensor sched, "
      "Tensor(e!) counter, Tensor? grad_scale=None, Tensor? found_inf=None) -> ()");
  m.def(
      "fused_sgd_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] momentum_buffers, "
      "int[] groups, Tensor hyper, Tensor sched, Tensor(e!) counter, Tensor? grad_scale=None, "
      "Tensor? found_inf=None) -> ()");
}
