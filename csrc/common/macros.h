#pragma once
// Qualifiers for code shared by the CPU (C++) and CUDA (nvcc) translation units.
#if defined(__CUDACC__)
#define PYE_HD __host__ __device__ __forceinline__
#else
#define PYE_HD inline
#endif
