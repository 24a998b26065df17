// Macros shared by every kernel file; all of ours start with FCX_.
#pragma once

// FCX_HD: a small function compiled for both host and device in .cu files, plain inline in
// C++ files (the shared math of csrc/augment_normalize.h and csrc/fused_optim.h).
#ifdef __CUDACC__
#define FCX_HD __host__ __device__ __forceinline__
#else
#define FCX_HD inline
#endif
