#pragma once
// Local (DISCO-style) basis integrals: the fused contraction of per-edge basis
// values with gathered source features,
//   a[i, b, :] = sum_{e in row i} psi[e, b] * w[col_e] * f[col_e, :]      (M, B, C)
// after which the layer applies its learned coefficients theta (B, C, C_out)
// as one dense matmul. No E x C (or E x B x C) tensor is formed.
//
// Backward (all gathers, no atomics):
//   g[j, :]      = sum_{e -> j} sum_b psi[e, b] * grad_a[row_e, b, :]    (transposed CSR)
//   grad_f[j, :] = w[j] * g[j, :],   grad_w[j] = <f[j, :], g[j, :]>
//   grad_psi[e, b] = w[col_e] * <grad_a[row_e, b, :], f[col_e, :]>
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace pyengine::local {

struct LocalArgs {
  at::Tensor row_ptr, col, psi, f, weights;  // weights undefined when absent (all ones)
  int64_t num_rows, num_edges, num_src, bases, channels;
};
LocalArgs check_local_args(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& psi,
                           const at::Tensor& f, const std::optional<at::Tensor>& weights);

struct LocalBackwardArgs {
  LocalArgs fwd;
  at::Tensor grad_out, row_ptr_t, col_t, perm;
};
LocalBackwardArgs check_local_backward_args(const at::Tensor& grad_out, const at::Tensor& row_ptr,
                                            const at::Tensor& col, const at::Tensor& row_ptr_t,
                                            const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& psi,
                                            const at::Tensor& f, const std::optional<at::Tensor>& weights);

#define PYE_LOCAL_DECLARE(DEV)                                                                                    \
  at::Tensor local_basis_aggregate_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& psi, \
                                         const at::Tensor& f, const std::optional<at::Tensor>& weights);          \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> local_basis_aggregate_backward_##DEV(                            \
      const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,  \
      const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& psi, const at::Tensor& f,                \
      const std::optional<at::Tensor>& weights, bool need_psi, bool need_f, bool need_weights);

PYE_LOCAL_DECLARE(cpu)
PYE_LOCAL_DECLARE(cuda)
#undef PYE_LOCAL_DECLARE

}  // namespace pyengine::local
