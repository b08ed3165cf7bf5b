// CUDA instantiation of the segment ops: warp-per-item kernels from
// common/csr_engine_cuda.cuh, float32/float64/float16/bfloat16.
#include <torch/library.h>

#include "common/csr_engine_cuda.cuh"
#include "common/expand_rows.h"
#include "segment/segment_impl.h"

namespace pyengine::segment {

PYE_SEGMENT_DEFINE(cuda, cuda::CsrEngine)

// Stable radix sort by column (at::sort uses CUB); same output as the CPU counting sort.
std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_transpose_cuda(const at::Tensor& row_ptr_in,
                                                                  const at::Tensor& col_in, int64_t num_cols) {
  check_transpose_args(row_ptr_in, col_in, num_cols);
  c10::cuda::CUDAGuard guard(col_in.device());
  const auto row_ptr = row_ptr_in.contiguous();
  const auto col = col_in.contiguous().to(at::kLong);
  const int64_t M = row_ptr.numel() - 1, E = col.numel();
  auto sorted = at::sort(col, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const auto& sorted_col = std::get<0>(sorted);
  auto perm = std::get<1>(sorted);
  auto row_ptr_t = at::searchsorted(sorted_col, at::arange(num_cols + 1, row_ptr.options()));
  auto lens = row_ptr.narrow(0, 1, M) - row_ptr.narrow(0, 0, M);
  auto row_of_edge = expand_rows(lens, E);
  auto col_t = row_of_edge.index_select(0, perm);
  return {row_ptr_t, col_t, perm};
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("segment_reduce", &segment_reduce_cuda);
  m.impl("segment_reduce_backward", &segment_reduce_backward_cuda);
  m.impl("segment_softmax", &segment_softmax_cuda);
  m.impl("segment_softmax_backward", &segment_softmax_backward_cuda);
  m.impl("segment_log_softmax", &segment_log_softmax_cuda);
  m.impl("segment_log_softmax_backward", &segment_log_softmax_backward_cuda);
  m.impl("spmm", &spmm_cuda);
  m.impl("csr_sddmm", &csr_sddmm_cuda);
  m.impl("csr_transpose", &csr_transpose_cuda);
}

}  // namespace pyengine::segment
