// CPU instantiation of segment_log_softmax (segment/segment_log_softmax.h).
#include <torch/library.h>

#include "common/csr_engine_cpu.h"
#include "segment/segment_impl.h"
#include "segment/segment_log_softmax.h"

namespace pyengine::segment {
namespace {
at::Tensor log_softmax_cpu(const at::Tensor& scores, const at::Tensor& row_ptr) {
  return segment_log_softmax_impl<cpu::CsrEngine>(scores, row_ptr);
}
at::Tensor log_softmax_backward_cpu(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& row_ptr) {
  return segment_log_softmax_backward_impl<cpu::CsrEngine>(grad_out, out, row_ptr);
}
}  // namespace

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("segment_log_softmax", &log_softmax_cpu);
  m.impl("segment_log_softmax_backward", &log_softmax_backward_cpu);
}

}  // namespace pyengine::segment
