// Self-test of the Thrust host back end (built only for it, by tests/cuda_emulation.py):
// the order in which thrust::for_each, through the stand-in for the CUDA policy that
// kdtree_cuda.cu uses, visits its elements. tests/neighbors/test_kdtree_emulated.py checks
// that it follows PYE_SIMT_ORDER, so the forward/reverse runs of the emulated k-d tree tests
// really run every element-wise loop in two different orders.
#include <ATen/cuda/ThrustAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <torch/library.h>

namespace {

struct RecordVisit {
  int64_t* order;
  int64_t* count;
  void operator()(int64_t i) const { order[(*count)++] = i; }
};

at::Tensor thrust_selftest_order(int64_t n) {
  TORCH_CHECK_VALUE(n >= 0, "n must be >= 0");
  at::cuda::ThrustAllocator alloc;
  auto order = at::full({n}, -1, at::kLong);
  int64_t count = 0;
  thrust::for_each(thrust::cuda::par_nosync(alloc).on(c10::cuda::getCurrentCUDAStream().stream()),
                   thrust::counting_iterator<int64_t>(0), thrust::counting_iterator<int64_t>(n),
                   RecordVisit{order.data_ptr<int64_t>(), &count});
  return order;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(pyengine, m) { m.def("thrust_selftest_order(int n) -> Tensor", &thrust_selftest_order); }
