// Argument parsing and checks of the fused GNO integral, shared by both devices.
#include <string>

#include "common/checks.h"
#include "gno/gno.h"

namespace pyengine::gno {
namespace {

Activation parse_activation(c10::string_view s) {
  if (s == "gelu") return Activation::Gelu;
  if (s == "relu") return Activation::Relu;
  if (s == "silu") return Activation::Silu;
  if (s == "tanh") return Activation::Tanh;
  TORCH_CHECK_VALUE(false, "activation must be one of 'gelu', 'relu', 'silu', 'tanh', got '", std::string(s), "'");
}

Transform parse_transform(c10::string_view s) {
  if (s == "linear") return Transform::Linear;
  if (s == "nonlinear") return Transform::Nonlinear;
  if (s == "linear_kernelonly") return Transform::KernelOnly;
  if (s == "nonlinear_kernelonly") return Transform::NonlinearKernelOnly;
  TORCH_CHECK_VALUE(false,
                    "transform must be one of 'linear', 'nonlinear', 'linear_kernelonly', 'nonlinear_kernelonly', got '",
                    std::string(s), "'");
}

Reduction parse_reduction(c10::string_view s) {
  if (s == "sum") return Reduction::Sum;
  if (s == "mean") return Reduction::Mean;
  TORCH_CHECK_VALUE(false, "reduction must be 'sum' or 'mean', got '", std::string(s), "'");
}

// The fused kernels run in float32 or float64 only (they call BLAS / FP32 FMA).
void check_fused_dtype(const at::Tensor& t, const char* name) {
  check_float_dtype(t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "the fused GNO kernel supports ",
                   name, " in float32 or float64, got ", t.scalar_type(),
                   "; cast the inputs or use GNOIntegral(..., fused=False)");
}

}  // namespace

GnoArgs check_gno_args(const at::Tensor& y, const at::Tensor& x, const at::Tensor& row_ptr, const at::Tensor& col,
                       const std::optional<at::Tensor>& f_y, const std::optional<at::Tensor>& weights,
                       const std::optional<at::Tensor>& edge_weights, const at::Tensor& params,
                       at::IntArrayRef dims, c10::string_view activation, c10::string_view transform,
                       c10::string_view reduction) {
  GnoArgs a;
  a.act = parse_activation(activation);
  a.transform = parse_transform(transform);
  a.reduction = parse_reduction(reduction);

  check_dim(y, 2, "y");
  check_dim(x, 2, "x");
  check_fused_dtype(y, "y");
  check_same_dtype(x, "x", y, "y");
  check_same_device(x, "x", y, "y");
  TORCH_CHECK_VALUE(x.size(1) == y.size(1), "x and y must have the same coordinate dimension, got x ", x.sizes(),
                    " and y ", y.sizes());
  a.coord_dim = y.size(1);
  TORCH_CHECK_VALUE(a.coord_dim >= 1, "y must have at least one coordinate column, got shape ", y.sizes());
  a.num_rows = x.size(0);
  a.num_cols = y.size(0);

  check_same_device(row_ptr, "row_ptr", y, "y");
  check_same_device(col, "col", y, "y");
  check_dim(col, 1, "col");
  a.num_edges = col.size(0);
  check_row_ptr(row_ptr, a.num_edges, "row_ptr", "the length of col");
  TORCH_CHECK_VALUE(row_ptr.numel() - 1 == a.num_rows, "row_ptr must have length x.shape[0] + 1 (",
                    a.num_rows + 1, "), got ", row_ptr.numel());
  check_col(col, a.num_edges, a.num_cols, "col", "the number of points in y");
  a.col_is_int32 = col.scalar_type() == at::kInt;

  // MLP layout.
  const int64_t nd = int64_t(dims.size());
  TORCH_CHECK_VALUE(nd >= 2 && nd <= kMaxLayers + 1, "dims must list 2 to ", kMaxLayers + 1,
                    " layer widths [in, hidden..., out] (at most ", kMaxLayers - 1, " hidden layers), got ", dims);
  a.num_layers = int(nd - 1);
  int64_t off = 0;
  for (int64_t l = 0; l < nd; ++l) {
    TORCH_CHECK_VALUE(dims[l] >= 1, "dims entries must be >= 1, got ", dims);
    a.dims[l] = dims[l];
  }
  for (int l = 0; l < a.num_layers; ++l) {
    a.w_off[l] = off;
    off += dims[l + 1] * dims[l];
    a.b_off[l] = off;
    off += dims[l + 1];
  }
  check_dim(params, 1, "params");
  check_same_dtype(params, "params", y, "y");
  check_same_device(params, "params", y, "y");
  TORCH_CHECK_VALUE(params.numel() == off, "params must hold every weight and bias of the MLP ", dims, " (", off,
                    " values), got ", params.numel());
  a.channels = dims[nd - 1];

  const bool has_f = f_y.has_value() && f_y->defined();
  int64_t expected_in = 2 * a.coord_dim;
  a.f_channels = 0;
  if (a.transform == Transform::KernelOnly) {
    TORCH_CHECK_VALUE(!has_f, "transform 'linear_kernelonly' does not use f_y; pass f_y=None");
  } else {
    TORCH_CHECK_VALUE(has_f, "transform '", std::string(transform), "' needs f_y (N, C), got None");
    const auto& f = *f_y;
    check_dim(f, 2, "f_y");
    check_same_dtype(f, "f_y", y, "y");
    check_same_device(f, "f_y", y, "y");
    TORCH_CHECK_VALUE(f.size(0) == a.num_cols, "f_y must have one row per point of y (", a.num_cols, "), got ",
                      f.size(0));
    a.f_channels = f.size(1);
    if (multiplies_f(a.transform)) {
      TORCH_CHECK_VALUE(a.f_channels == a.channels, "the MLP output width dims[-1] (", a.channels,
                        ") must equal f_y.shape[1] (", a.f_channels, ")");
    }
    a.f_y = f.contiguous();
    if (feeds_f(a.transform)) expected_in += a.f_channels;
  }
  TORCH_CHECK_VALUE(dims[0] == expected_in, "the MLP input width dims[0] must be ", expected_in, " (2 * coord_dim",
                    feeds_f(a.transform) ? " + f_y.shape[1]" : "", "), got ", dims[0]);

  if (weights.has_value() && weights->defined()) {
    const auto& w = *weights;
    check_dim(w, 1, "weights");
    check_same_dtype(w, "weights", y, "y");
    check_same_device(w, "weights", y, "y");
    TORCH_CHECK_VALUE(w.size(0) == a.num_cols, "weights must have one entry per point of y (", a.num_cols,
                      "), got ", w.size(0));
    a.weights = w.contiguous();
  }
  if (edge_weights.has_value() && edge_weights->defined()) {
    const auto& ew = *edge_weights;
    check_dim(ew, 1, "edge_weights");
    check_same_dtype(ew, "edge_weights", y, "y");
    check_same_device(ew, "edge_weights", y, "y");
    TORCH_CHECK_VALUE(ew.size(0) == a.num_edges, "edge_weights must have one entry per edge (len(col) = ",
                      a.num_edges, "), got ", ew.size(0));
    a.edge_weights = ew.contiguous();
  }
  a.y = y.contiguous();
  a.x = x.contiguous();
  a.row_ptr = row_ptr.contiguous();
  a.col = col.contiguous();
  a.params = params.contiguous();
  return a;
}

at::Tensor check_gno_grad_out(const at::Tensor& grad_out, const GnoArgs& a) {
  check_dim(grad_out, 2, "grad_out");
  check_same_dtype(grad_out, "grad_out", a.y, "y");
  check_same_device(grad_out, "grad_out", a.y, "y");
  TORCH_CHECK_VALUE(grad_out.size(0) == a.num_rows && grad_out.size(1) == a.channels, "grad_out must have shape (",
                    a.num_rows, ", ", a.channels, "), got ", grad_out.sizes());
  return grad_out.contiguous();
}

}  // namespace pyengine::gno
