"""Build fastcore_ext and its compiled kernels, fastcore_ext._C.

The C++ sources (csrc/*.cpp: op schemas and shared argument checks, csrc/cpu/*.cpp: the CPU
kernels) are always built. The CUDA sources
(csrc/cuda/*.cu) are built too when torch has CUDA and a GPU is visible, or when
FORCE_CUDA=1 (so CI compiles them on a machine without a GPU).

Build with the torch that will run the kernels: `pip install --no-build-isolation .`
"""

import glob
import os
import shutil
import sys
import sysconfig

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home() -> str | None:
    """The CUDA toolkit folder: $CUDA_HOME, /usr/local/cuda, or nvcc's real location.

    torch guesses dirname(dirname(which nvcc)), which is wrong when nvcc on PATH is a wrapper
    script (e.g. /usr/local/bin/nvcc calling /usr/local/cuda/bin/nvcc).
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    candidates = ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in candidates:
        if os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isdir(
            os.path.join(home, "include")
        ):
            return home
    return None


_cuda_home = _find_cuda_home()
if _cuda_home:
    # torch.utils.cpp_extension reads CUDA_HOME once, when it is imported.
    os.environ["CUDA_HOME"] = _cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _pip_cuda_include_dirs() -> list[str]:
    """Headers that torch's CUDA headers include (cusparse.h, ...) but that only the pip
    `nvidia` package ships, in site-packages/nvidia/cu<major>/include."""
    found = []
    for path in [sysconfig.get_paths()["purelib"], *sys.path]:
        for d in sorted(glob.glob(os.path.join(path, "nvidia", "cu*", "include"))):
            d = os.path.realpath(d)
            if d not in found:
                found.append(d)
    return found


def _want_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if torch.version.cuda is None:
            sys.exit("FORCE_CUDA=1 but this torch has no CUDA support (torch.version.cuda is None)")
        if _cuda_home is None:
            sys.exit(
                "FORCE_CUDA=1 but no CUDA toolkit was found: "
                "set CUDA_HOME to the folder that has bin/nvcc"
            )
        return True
    return torch.version.cuda is not None and _cuda_home is not None and torch.cuda.is_available()


def _extension():
    rel = lambda pattern: sorted(  # noqa: E731  (paths relative to setup.py, as setuptools wants)
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern))
    )
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    cxx = ["-O3", "-fopenmp"]  # the C++ standard is torch's choice (C++20 for torch 2.14)
    define_macros = []
    include_dirs = [os.path.join(ROOT, "csrc")]
    link_args = ["-fopenmp"]
    if _want_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            # No GPU to ask: Ampere (A100) and Hopper (H100/H200), plus PTX for newer cards.
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        nvcc = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            "fastcore_ext._C",
            sources + rel("csrc/cuda/*.cu"),
            include_dirs=include_dirs + _pip_cuda_include_dirs(),
            define_macros=define_macros + [("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link_args,
        )
    return CppExtension(
        "fastcore_ext._C",
        sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx},
        extra_link_args=link_args,
    )


setup(
    packages=find_packages(include=["fastcore_ext", "fastcore_ext.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
