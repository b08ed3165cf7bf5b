#pragma once
// Kernel launches, dynamic shared memory and device limits go through these few
// helpers instead of `<<<...>>>` and `extern __shared__` in each file. The
// reason is testability: with PYE_SIMT_EMULATION defined, the same kernels
// compile as host C++ against tests/simt (a CPU emulator of the CUDA execution
// model: one fiber per thread, warp and block barriers, shuffles, atomics,
// WMMA), so their logic runs in the CPU test suite on machines without a GPU.
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace pyengine::cuda {

#if defined(PYE_SIMT_EMULATION)
using ::pye_simt::dynamic_smem;
using ::pye_simt::launch;
#else
// The block's dynamic shared memory (sized by the launch), 128-byte aligned
// (WMMA tile pointers must be 32-byte aligned; the declaration guarantees it).
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(128) unsigned char pye_dynamic_smem[];
  return reinterpret_cast<T*>(pye_dynamic_smem);
}

// kernel<<<grid, block, smem, stream>>>(args...), then the launch-error check.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

// Current device's attribute (e.g. cudaDevAttrMultiProcessorCount).
inline int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, value = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, dev));
  return value;
}

// Lets `kernel` use `bytes` of dynamic shared memory (above 48 KiB needs this opt-in).
template <typename... Params>
void allow_dynamic_smem(void (*kernel)(Params...), size_t bytes) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace pyengine::cuda
