#pragma once
// Emulator stand-in for the CUDA Thrust policy of the k-d tree (csrc/neighbors/kdtree_cuda.cu).
// The Thrust host back end of tests/cuda_emulation.py compiles the .cu as host C++ with
// THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP, so every Thrust algorithm (radix sorts become
// merge sorts; scans, reductions and for_each over the same __host__ __device__ functors) runs
// on the CPU. The .cu asks for `thrust::cuda::par_nosync(alloc).on(stream)`; this header
// supplies that name as a sequential host policy whose element-wise loops (thrust::for_each:
// the "kernels" of the Thrust code, one GPU thread per element) visit the elements in index
// order, or in reverse with PYE_SIMT_ORDER=reverse, as the SIMT emulator orders lanes: a
// functor that reads what another element writes (a race between GPU threads) gives different
// results in the two orders.
#include <thrust/execution_policy.h>
#include <thrust/system/cpp/execution_policy.h>

#include "pye_simt/runtime.h"

#if THRUST_DEVICE_SYSTEM != THRUST_DEVICE_SYSTEM_CPP
#error "the Thrust host emulation needs THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP"
#endif

namespace pye_simt {

struct ThrustHostPolicy : thrust::system::cpp::execution_policy<ThrustHostPolicy> {
  ThrustHostPolicy on(cudaStream_t) const { return *this; }  // one null stream, as CUDAStream.h
};

// Found by argument-dependent lookup from thrust::for_each, and chosen over the sequential
// back end's overload (an exact match for the policy type): the element order of a "launch".
template <class It, class F>
It for_each(ThrustHostPolicy&, It first, It last, F f) {
  if (order_reversed()) {
    for (It it = last; it != first;) {
      --it;
      f(*it);
    }
    return last;
  }
  for (; first != last; ++first) f(*first);
  return first;
}

}  // namespace pye_simt

namespace at::cuda {
struct ThrustAllocator {};  // Thrust's temporary memory is ordinary host memory here
}  // namespace at::cuda

THRUST_NAMESPACE_BEGIN
namespace cuda {
inline pye_simt::ThrustHostPolicy par_nosync(at::cuda::ThrustAllocator&) { return {}; }
}  // namespace cuda
THRUST_NAMESPACE_END
