// Argument checks of the local basis-integral ops (shared by CPU and CUDA).
#include "common/checks.h"
#include "local/local_basis.h"

namespace pyengine::local {

LocalArgs check_local_args(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& psi,
                           const at::Tensor& f, const std::optional<at::Tensor>& weights) {
  check_dim(psi, 2, "psi");
  check_dim(f, 2, "f");
  check_float_dtype(f, "f");
  check_same_dtype(psi, "psi", f, "f");
  check_same_device(psi, "psi", f, "f");
  check_same_device(row_ptr, "row_ptr", f, "f");
  check_same_device(col, "col", f, "f");
  check_dim(col, 1, "col");
  const int64_t E = col.size(0);
  check_row_ptr(row_ptr, E, "row_ptr", "the length of col");
  TORCH_CHECK_VALUE(psi.size(0) == E, "psi must have one row per edge (", E, "), got ", psi.size(0));
  check_col(col, E, f.size(0), "col", "the number of source points f.size(0)");
  at::Tensor w;
  if (weights.has_value() && weights->defined()) {
    w = *weights;
    check_dim(w, 1, "weights");
    check_same_dtype(w, "weights", f, "f");
    check_same_device(w, "weights", f, "f");
    TORCH_CHECK_VALUE(w.size(0) == f.size(0), "weights must have one entry per source point (", f.size(0),
                      "), got ", w.size(0));
    w = w.contiguous();
  }
  return {row_ptr.contiguous(), col.contiguous(), psi.contiguous(), f.contiguous(), w,
          row_ptr.numel() - 1, E, f.size(0), psi.size(1), f.size(1)};
}

LocalBackwardArgs check_local_backward_args(const at::Tensor& grad_out, const at::Tensor& row_ptr,
                                            const at::Tensor& col, const at::Tensor& row_ptr_t,
                                            const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& psi,
                                            const at::Tensor& f, const std::optional<at::Tensor>& weights) {
  LocalBackwardArgs a{check_local_args(row_ptr, col, psi, f, weights), {}, {}, {}, {}};
  const auto& s = a.fwd;
  check_same_dtype(grad_out, "grad_out", f, "f");
  check_same_device(grad_out, "grad_out", f, "f");
  TORCH_CHECK_VALUE(grad_out.dim() == 3 && grad_out.size(0) == s.num_rows && grad_out.size(1) == s.bases &&
                        grad_out.size(2) == s.channels,
                    "grad_out must have shape (M, bases, channels) = (", s.num_rows, ", ", s.bases, ", ",
                    s.channels, "), got ", grad_out.sizes());
  check_same_device(row_ptr_t, "row_ptr_t", f, "f");
  check_same_device(col_t, "col_t", f, "f");
  check_same_device(perm, "perm", f, "f");
  check_row_ptr(row_ptr_t, s.num_edges, "row_ptr_t", "the number of edges");
  TORCH_CHECK_VALUE(row_ptr_t.numel() - 1 == s.num_src, "row_ptr_t must have one row per source point (",
                    s.num_src, ") plus one, got length ", row_ptr_t.numel());
  check_index_dtype(col_t, "col_t", /*allow_int32=*/false);
  check_index_dtype(perm, "perm", /*allow_int32=*/false);
  check_col(col_t, s.num_edges, s.num_rows, "col_t", "the number of rows");
  check_col(perm, s.num_edges, s.num_edges, "perm", "the number of edges");
  a.grad_out = grad_out.contiguous();
  a.row_ptr_t = row_ptr_t.contiguous();
  a.col_t = col_t.contiguous();
  a.perm = perm.contiguous();
  return a;
}

}  // namespace pyengine::local
