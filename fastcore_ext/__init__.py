"""fastcore_ext: fastai-style image classification on fused C++/CUDA kernels.

Users start with `from fastcore_ext.vision import *`. The kernels live in
fastcore_ext.ops (typed wrappers of torch.ops.fastcore_ext.*).
"""

__version__ = "0.1.0"
