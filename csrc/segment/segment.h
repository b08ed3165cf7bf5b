#pragma once
// Segment (CSR) op family: reductions over the edges of each row, segment
// softmax, and the sparse-dense products (SpMM / SDDMM) that message passing
// is made of. Declares the checked argument bundles shared by both devices and
// the CPU / CUDA entry points that registration binds.
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace pyengine::segment {

enum class Reduce { Sum, Mean, Max, Min };
Reduce parse_reduce(c10::string_view reduce);
inline bool is_extremum(Reduce r) { return r == Reduce::Max || r == Reduce::Min; }

// Validated, contiguous arguments of an op over per-edge values src (E, C).
struct SegmentArgs {
  at::Tensor src, row_ptr;
  int64_t num_rows, num_edges, channels;
};
// allow_int: int32 / int64 src accepted besides the floating types.
SegmentArgs check_segment_args(const at::Tensor& src, const at::Tensor& row_ptr, const char* src_name,
                               bool allow_int = false);

// Validated arguments of a sparse (M x N) CSR matrix times dense x (N, C).
struct SpmmArgs {
  at::Tensor row_ptr, col, values, x;  // values undefined when absent (all ones)
  int64_t num_rows, num_edges, num_cols, channels;
};
// x_name names the dense operand in error messages ("x" for spmm, "b" for sddmm).
SpmmArgs check_spmm_args(const at::Tensor& row_ptr, const at::Tensor& col, const std::optional<at::Tensor>& values,
                         const at::Tensor& x, const char* x_name = "x");

// Checks grad_out (M, C) against a row pointer and returns it contiguous.
at::Tensor check_row_values(const at::Tensor& values, const at::Tensor& row_ptr, const char* name);

#define PYE_SEGMENT_DECLARE(DEV)                                                                                      \
  std::tuple<at::Tensor, at::Tensor> segment_reduce_##DEV(const at::Tensor& src, const at::Tensor& row_ptr,           \
                                                          c10::string_view reduce, bool need_arg);                    \
  at::Tensor segment_reduce_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& row_ptr,                     \
                                           const at::Tensor& arg, c10::string_view reduce, int64_t num_edges);        \
  at::Tensor segment_softmax_##DEV(const at::Tensor& scores, const at::Tensor& row_ptr);                              \
  at::Tensor segment_softmax_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& out,                        \
                                            const at::Tensor& row_ptr);                                               \
  at::Tensor segment_log_softmax_##DEV(const at::Tensor& scores, const at::Tensor& row_ptr);                          \
  at::Tensor segment_log_softmax_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& out,                    \
                                                const at::Tensor& row_ptr);                                           \
  at::Tensor spmm_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, const std::optional<at::Tensor>& values,    \
                        const at::Tensor& x);                                                                         \
  at::Tensor csr_sddmm_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& a,                   \
                             const at::Tensor& b);                                                                    \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_transpose_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, \
                                                                     int64_t num_cols);

PYE_SEGMENT_DECLARE(cpu)
PYE_SEGMENT_DECLARE(cuda)
#undef PYE_SEGMENT_DECLARE

}  // namespace pyengine::segment
