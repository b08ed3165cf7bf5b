#pragma once
// Emulator stand-in: one null stream (emulated launches run synchronously).
#include <c10/core/Device.h>

#include "pye_simt/runtime.h"

namespace c10::cuda {
struct CUDAStream {
  cudaStream_t stream() const { return nullptr; }
  operator cudaStream_t() const { return nullptr; }
};
inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex = -1) { return {}; }
}  // namespace c10::cuda
