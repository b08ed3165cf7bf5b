// CUDA instantiation of segment_log_softmax (segment/segment_log_softmax.h):
// the warp-per-item engine of common/csr_engine_cuda.cuh, as segment_cuda.cu.
#include <torch/library.h>

#include "common/csr_engine_cuda.cuh"
#include "segment/segment_impl.h"
#include "segment/segment_log_softmax.h"

namespace pyengine::segment {
namespace {
at::Tensor log_softmax_cuda(const at::Tensor& scores, const at::Tensor& row_ptr) {
  c10::cuda::CUDAGuard guard(scores.device());
  return segment_log_softmax_impl<cuda::CsrEngine>(scores, row_ptr);
}
at::Tensor log_softmax_backward_cuda(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& row_ptr) {
  c10::cuda::CUDAGuard guard(out.device());
  return segment_log_softmax_backward_impl<cuda::CsrEngine>(grad_out, out, row_ptr);
}
}  // namespace

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("segment_log_softmax", &log_softmax_cuda);
  m.impl("segment_log_softmax_backward", &log_softmax_backward_cuda);
}

}  // namespace pyengine::segment
