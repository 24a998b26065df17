// Helpers of the argument checks that both backends run (csrc/augment_normalize_args.h,
// csrc/fused_optim.cpp). Messages read as the Python wrappers' (fastcore_ext/checks.py):
// "<arg> should be ..., got ...", ValueError through TORCH_CHECK_VALUE, TypeError through
// TORCH_CHECK_TYPE.
#pragma once

#include <c10/core/ScalarType.h>

#include <string>

namespace fastcore_ext {

// A dtype as Python prints it ("torch.float32"), so that both layers' messages are the same.
inline std::string dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::kByte:
      return "torch.uint8";
    case c10::kChar:
      return "torch.int8";
    case c10::kShort:
      return "torch.int16";
    case c10::kInt:
      return "torch.int32";
    case c10::kLong:
      return "torch.int64";
    case c10::kHalf:
      return "torch.float16";
    case c10::kBFloat16:
      return "torch.bfloat16";
    case c10::kFloat:
      return "torch.float32";
    case c10::kDouble:
      return "torch.float64";
    case c10::kBool:
      return "torch.bool";
    default:
      return std::string("torch.") + c10::toString(t);
  }
}

}  // namespace fastcore_ext
