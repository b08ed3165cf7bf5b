// Argument checks of the fused attention ops (shared by the CPU and CUDA entry points).
#include <cmath>

#include "common/checks.h"
#include "attention/attention.h"

namespace pyengine::attention {

at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

AttentionArgs check_attention_args(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& q,
                                   const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& bias,
                                   double scale) {
  check_dim(q, 3, "q");
  check_dim(k, 3, "k");
  check_dim(v, 3, "v");
  check_float_dtype(q, "q");
  check_same_dtype(k, "k", q, "q");
  check_same_dtype(v, "v", q, "q");
  check_same_device(k, "k", q, "q");
  check_same_device(v, "v", q, "q");
  check_same_device(row_ptr, "row_ptr", q, "q");
  check_same_device(col, "col", q, "q");
  TORCH_CHECK_VALUE(std::isfinite(scale), "scale must be finite, got ", scale);
  const int64_t H = q.size(1), Dk = q.size(2);
  TORCH_CHECK_VALUE(k.size(1) == H && k.size(2) == Dk, "k must have shape (N, heads, dk) = (N, ", H, ", ", Dk,
                    ") to match q, got ", k.sizes());
  TORCH_CHECK_VALUE(v.size(0) == k.size(0) && v.size(1) == H,
                    "v must have shape (N, heads, dv) with the N and heads of k (", k.size(0), ", ", H, "), got ",
                    v.sizes());
  check_dim(col, 1, "col");
  const int64_t E = col.size(0);
  check_row_ptr(row_ptr, E, "row_ptr", "the length of col");
  TORCH_CHECK_VALUE(row_ptr.numel() - 1 == q.size(0), "q must have one row per CSR row (", row_ptr.numel() - 1,
                    "), got ", q.size(0));
  check_col(col, E, k.size(0), "col", "the number of source points k.size(0)");
  at::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = *bias;
    check_dim(b, 2, "bias");
    check_same_dtype(b, "bias", q, "q");
    check_same_device(b, "bias", q, "q");
    TORCH_CHECK_VALUE(b.size(0) == E && b.size(1) == H, "bias must have shape (num_edges, heads) = (", E, ", ", H,
                      "), got ", b.sizes());
    b = b.contiguous();
  }
  return {row_ptr.contiguous(), col.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(), b,
          q.size(0), E, k.size(0), H, Dk, v.size(2)};
}

AttentionBackwardArgs check_attention_backward_args(const at::Tensor& grad_out, const at::Tensor& row_ptr,
                                                    const at::Tensor& col, const at::Tensor& row_ptr_t,
                                                    const at::Tensor& col_t, const at::Tensor& perm,
                                                    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                    const std::optional<at::Tensor>& bias, const at::Tensor& lse,
                                                    const at::Tensor& delta, double scale) {
  AttentionBackwardArgs a{check_attention_args(row_ptr, col, q, k, v, bias, scale), {}, {}, {}, {}, {}, {}};
  const auto& f = a.fwd;
  check_same_dtype(grad_out, "grad_out", q, "q");
  check_same_device(grad_out, "grad_out", q, "q");
  TORCH_CHECK_VALUE(grad_out.dim() == 3 && grad_out.size(0) == f.num_rows && grad_out.size(1) == f.heads &&
                        grad_out.size(2) == f.dv,
                    "grad_out must have shape (M, heads, dv) = (", f.num_rows, ", ", f.heads, ", ", f.dv, "), got ",
                    grad_out.sizes());
  const auto acc = acc_dtype(q.scalar_type());
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{lse, "lse"}, {delta, "delta"}}) {
    check_same_device(t, name, q, "q");
    TORCH_CHECK_TYPE(t.scalar_type() == acc, name, " must be ", acc, " for ", q.scalar_type(), " inputs, got ",
                     t.scalar_type());
    TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == f.num_rows && t.size(1) == f.heads, name,
                      " must have shape (M, heads) = (", f.num_rows, ", ", f.heads, "), got ", t.sizes());
  }
  check_same_device(row_ptr_t, "row_ptr_t", q, "q");
  check_same_device(col_t, "col_t", q, "q");
  check_same_device(perm, "perm", q, "q");
  check_row_ptr(row_ptr_t, f.num_edges, "row_ptr_t", "the number of edges");
  TORCH_CHECK_VALUE(row_ptr_t.numel() - 1 == f.num_src, "row_ptr_t must have one row per source point (",
                    f.num_src, ") plus one, got length ", row_ptr_t.numel());
  check_index_dtype(col_t, "col_t", /*allow_int32=*/false);
  check_index_dtype(perm, "perm", /*allow_int32=*/false);
  check_col(col_t, f.num_edges, f.num_rows, "col_t", "the number of rows");
  check_col(perm, f.num_edges, f.num_edges, "perm", "the number of edges");
  a.grad_out = grad_out.contiguous();
  a.row_ptr_t = row_ptr_t.contiguous();
  a.col_t = col_t.contiguous();
  a.perm = perm.contiguous();
  a.lse = lse.contiguous();
  a.delta = delta.contiguous();
  return a;
}

}  // namespace pyengine::attention
