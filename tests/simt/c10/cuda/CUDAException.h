#pragma once
// Emulator stand-in: CUDA error checks against the emulated runtime.
#include <c10/util/Exception.h>

#include "pye_simt/runtime.h"

#define C10_CUDA_CHECK(EXPR)                                                            \
  do {                                                                                  \
    const cudaError_t pye_simt_err = (EXPR);                                            \
    TORCH_CHECK(pye_simt_err == cudaSuccess, "CUDA error: ", cudaGetErrorString(pye_simt_err)); \
  } while (0)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(cudaGetLastError())
