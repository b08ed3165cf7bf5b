#pragma once
// Forced first include (-include) of every translation unit that the emulator
// build compiles (tests/cuda_emulation.py): the torch headers first, untouched,
// then the CUDA keywords as host C++, and the op registrations redirected, so
// that the kernels' TORCH_LIBRARY_IMPL(pyengine, CUDA, m) blocks register them
// as CPU kernels of a separate namespace, torch.ops.pyengine_emu, beside the
// real pyengine ops (whose CPU kernels are the reference in the tests).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "pye_simt/runtime.h"

#undef TORCH_LIBRARY
#undef TORCH_LIBRARY_FRAGMENT
#undef TORCH_LIBRARY_IMPL
#define TORCH_LIBRARY(ns, m) _TORCH_LIBRARY_FRAGMENT(pyengine_emu, m, C10_UID)
#define TORCH_LIBRARY_FRAGMENT(ns, m) _TORCH_LIBRARY_FRAGMENT(pyengine_emu, m, C10_UID)
#define TORCH_LIBRARY_IMPL(ns, k, m) _TORCH_LIBRARY_IMPL(pyengine_emu, CPU, m, C10_UID)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Blocks run one at a time, so a function-local static is exactly one block's shared variable.
#define __shared__ static

using std::max;
using std::min;
