#pragma once
// GNO kernel integral, fused: for every query row i of a CSR neighbor graph
//
//   out_i = reduce_{e in row i} k(z_e) * f_y[col_e] * w[col_e] * ew[e]
//   z_e   = [x[i], y[col_e]]            (+ f_y[col_e] for the "nonlinear" transforms)
//   k     = a small MLP: Linear -> act -> ... -> Linear (no activation at the end)
//
// w (N,) are per-source weights (quadrature weights), ew (E,) per-edge weights
// (e.g. GAOT's attention weights, or neuralop's per-edge integration weights);
// either may be absent. The "kernelonly" transforms drop the factor f_y[col_e]
// ("nonlinear_kernelonly" still feeds f_y to the MLP, whose output width may
// then differ from f_y's).
//
// The kernels evaluate the MLP per edge and reduce on the fly, so no E x hidden
// or E x C tensor is ever written; backward recomputes the per-edge activations
// (flash-attention style) instead of storing them.
//
// The MLP parameters travel as one flat tensor `params`: for each layer l, the
// weight (dims[l+1], dims[l]) row-major exactly as torch.nn.Linear stores it,
// then its bias (dims[l+1]). dims = [D0, h1, ..., C] with D0 = 2 * coord_dim
// (+ f_y's width for the "nonlinear" transforms).
#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <tuple>

namespace pyengine::gno {

enum class Activation { Gelu, Relu, Silu, Tanh };
enum class Transform { Linear, Nonlinear, KernelOnly, NonlinearKernelOnly };

// Whether the MLP input holds f_y, and whether the message is multiplied by it.
inline bool feeds_f(Transform t) { return t == Transform::Nonlinear || t == Transform::NonlinearKernelOnly; }
inline bool multiplies_f(Transform t) { return t == Transform::Linear || t == Transform::Nonlinear; }
enum class Reduction { Sum, Mean };

constexpr int kMaxLayers = 4;  // Linear layers, i.e. up to 3 hidden layers

// Validated, contiguous arguments of gno_integral and its backward.
struct GnoArgs {
  at::Tensor y, x, row_ptr, col, f_y, weights, edge_weights, params;  // f_y / weights / edge_weights undefined when absent
  Activation act;
  Transform transform;
  Reduction reduction;
  int num_layers;                      // Linear layers
  std::array<int64_t, kMaxLayers + 1> dims;  // dims[0..num_layers]
  std::array<int64_t, kMaxLayers> w_off, b_off;  // offsets into params
  int64_t num_rows, num_cols, num_edges, coord_dim, channels;  // channels: the MLP's (and the output's) width
  int64_t f_channels;  // width of f_y (0 when absent); equals channels when multiplies_f(transform)
  bool col_is_int32;
};

GnoArgs check_gno_args(const at::Tensor& y, const at::Tensor& x, const at::Tensor& row_ptr, const at::Tensor& col,
                       const std::optional<at::Tensor>& f_y, const std::optional<at::Tensor>& weights,
                       const std::optional<at::Tensor>& edge_weights, const at::Tensor& params,
                       at::IntArrayRef dims, c10::string_view activation, c10::string_view transform,
                       c10::string_view reduction);

// grad_out (M, C) of the forward described by `a`, returned contiguous.
at::Tensor check_gno_grad_out(const at::Tensor& grad_out, const GnoArgs& a);

// Which input gradients backward computes: y, x, f_y, weights, edge_weights (params always).
struct GnoNeed {
  bool y, x, f_y, weights, edge_weights;
};
inline GnoNeed parse_need(std::array<bool, 5> need) { return {need[0], need[1], need[2], need[3], need[4]}; }

// grad_y, grad_x, grad_f_y, grad_weights, grad_edge_weights, grad_params
using GnoGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

#define PYE_GNO_DECLARE(DEV)                                                                                        \
  at::Tensor gno_integral_##DEV(const at::Tensor& y, const at::Tensor& x, const at::Tensor& row_ptr,                \
                                const at::Tensor& col, const std::optional<at::Tensor>& f_y,                        \
                                const std::optional<at::Tensor>& weights,                                           \
                                const std::optional<at::Tensor>& edge_weights, const at::Tensor& params,            \
                                at::IntArrayRef dims, c10::string_view activation, c10::string_view transform,      \
                                c10::string_view reduction);                                                        \
  GnoGrads gno_integral_backward_##DEV(                                                                             \
      const at::Tensor& grad_out, const at::Tensor& y, const at::Tensor& x, const at::Tensor& row_ptr,              \
      const at::Tensor& col, const std::optional<at::Tensor>& f_y, const std::optional<at::Tensor>& weights,        \
      const std::optional<at::Tensor>& edge_weights, const at::Tensor& params, at::IntArrayRef dims,                \
      c10::string_view activation, c10::string_view transform, c10::string_view reduction, std::array<bool, 5> need);

PYE_GNO_DECLARE(cpu)
PYE_GNO_DECLARE(cuda)
#undef PYE_GNO_DECLARE

}  // namespace pyengine::gno
