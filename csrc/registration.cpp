// Every pyengine op schema, in one place. Device kernels register themselves
// in <family>/<family>_{cpu.cpp,cuda.cu}; fake (meta) kernels and autograd are
// registered from Python (pyengine/ops/).
#include <torch/library.h>

TORCH_LIBRARY(pyengine, m) {
  // segment: CSR reductions and sparse-dense products. row_ptr is int64 (M+1).
  // arg: winning edge per (row, channel) for max/min when need_arg (for backward), else empty.
  m.def("segment_reduce(Tensor src, Tensor row_ptr, str reduce, bool need_arg=True) -> (Tensor out, Tensor arg)");
  m.def("segment_reduce_backward(Tensor grad_out, Tensor row_ptr, Tensor arg, str reduce, int num_edges) -> Tensor");
  m.def("segment_softmax(Tensor scores, Tensor row_ptr) -> Tensor");
  m.def("segment_softmax_backward(Tensor grad_out, Tensor out, Tensor row_ptr) -> Tensor");
  m.def("spmm(Tensor row_ptr, Tensor col, Tensor? values, Tensor x) -> Tensor");
  m.def("csr_sddmm(Tensor row_ptr, Tensor col, Tensor a, Tensor b) -> Tensor");
  m.def("csr_transpose(Tensor row_ptr, Tensor col, int num_cols) -> (Tensor row_ptr_t, Tensor col_t, Tensor perm)");
}
