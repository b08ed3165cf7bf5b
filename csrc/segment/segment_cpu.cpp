// CPU instantiation of the segment ops (OpenMP through at::parallel_for).
#include <torch/library.h>

#include <vector>

#include "common/csr_engine_cpu.h"
#include "segment/segment_impl.h"

namespace pyengine::segment {

PYE_SEGMENT_DEFINE(cpu, cpu::CsrEngine)

// Stable counting sort by column: O(E + N), edges of a column keep row order.
std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_transpose_cpu(const at::Tensor& row_ptr_in,
                                                                 const at::Tensor& col_in, int64_t num_cols) {
  check_transpose_args(row_ptr_in, col_in, num_cols);
  const auto row_ptr = row_ptr_in.contiguous();
  const auto col = col_in.contiguous().to(at::kLong);
  const int64_t M = row_ptr.numel() - 1, E = col.numel();
  auto opts = row_ptr.options();
  auto row_ptr_t = at::zeros({num_cols + 1}, opts);
  auto col_t = at::empty({E}, opts);
  auto perm = at::empty({E}, opts);
  const int64_t* rp = row_ptr.const_data_ptr<int64_t>();
  const int64_t* cl = col.const_data_ptr<int64_t>();
  int64_t* rpt = row_ptr_t.data_ptr<int64_t>();
  int64_t* ct = col_t.data_ptr<int64_t>();
  int64_t* pm = perm.data_ptr<int64_t>();
  for (int64_t e = 0; e < E; ++e) ++rpt[cl[e] + 1];
  for (int64_t j = 0; j < num_cols; ++j) rpt[j + 1] += rpt[j];
  std::vector<int64_t> cursor(rpt, rpt + num_cols);
  for (int64_t r = 0; r < M; ++r) {
    for (int64_t e = rp[r]; e < rp[r + 1]; ++e) {
      const int64_t pos = cursor[cl[e]]++;
      ct[pos] = r;
      pm[pos] = e;
    }
  }
  return {row_ptr_t, col_t, perm};
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("segment_reduce", &segment_reduce_cpu);
  m.impl("segment_reduce_backward", &segment_reduce_backward_cpu);
  m.impl("segment_softmax", &segment_softmax_cpu);
  m.impl("segment_softmax_backward", &segment_softmax_backward_cpu);
  m.impl("segment_log_softmax", &segment_log_softmax_cpu);
  m.impl("segment_log_softmax_backward", &segment_log_softmax_backward_cpu);
  m.impl("spmm", &spmm_cpu);
  m.impl("csr_sddmm", &csr_sddmm_cpu);
  m.impl("csr_transpose", &csr_transpose_cpu);
}

}  // namespace pyengine::segment
