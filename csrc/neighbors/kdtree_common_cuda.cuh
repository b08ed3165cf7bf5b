#pragma once
// Helpers shared by the GPU k-d tree build and queries (see kdtree_cuda.cuh):
// element-wise loops through the Backend's Thrust policy, finite checks, host copies.
#include <ATen/ATen.h>
#include <thrust/count.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/macros.h"

namespace pyengine::neighbors::cuda {

using Count = thrust::counting_iterator<int64_t>;

template <class Backend, class F>
void for_n(Backend& be, int64_t n, const F& f) {
  if (n > 0) thrust::for_each(be.policy(), Count(0), Count(n), f);
}

// True when x is NaN or +-Inf (x - x is then NaN), without relying on
// std::isfinite being available to device code.
template <class T>
struct NotFinite {
  PYE_HD bool operator()(T x) const { return !(x - x == T(0)); }
};

template <class Backend, class T>
bool all_finite(Backend& be, const T* x, int64_t n) {
  return n == 0 || thrust::count_if(be.policy(), x, x + n, NotFinite<T>()) == 0;
}

// A copy of host values on the device (synchronous: the vector may go right after).
inline at::Tensor host_to(const std::vector<int64_t>& v, at::IntArrayRef shape, at::Device dev) {
  auto host = at::empty(shape, at::kLong);
  std::copy(v.begin(), v.end(), host.data_ptr<int64_t>());
  return host.to(dev);
}

// Runs f(std::integral_constant<int, D>) for the runtime dimension d in {2, 3}.
template <class F>
void dispatch_dim(int64_t d, const F& f) {
  if (d == 2) {
    f(std::integral_constant<int, 2>{});
  } else {
    f(std::integral_constant<int, 3>{});
  }
}

}  // namespace pyengine::neighbors::cuda
