#pragma once
// Fused CSR attention: for every query row i and head h,
//   s_e  = scale * <q[i,h,:], k[col_e,h,:]> + bias[e,h]      (bias optional)
//   out[i,h,:] = sum_{e in row i} softmax_e(s) * v[col_e,h,:]
// with keys and values given per *source point* (N, H, D), so no E x H x D
// tensor is ever formed. One pass with an online softmax; the per-row
// log-sum-exp is returned so backward can recompute the probabilities
// (flash-attention style) instead of storing them.
//
// Empty rows and rows whose scores are all -inf give out = 0 and lse = -inf.
//
// Backward is two gather passes, no atomics (deterministic on both devices):
//   rows:    grad_q[i] = scale * sum_e ds_e k[col_e],  grad_bias[e] = ds_e
//   columns: grad_k[j] = scale * sum_{e -> j} ds_e q[row_e],
//            grad_v[j] = sum_{e -> j} p_e grad_out[row_e]
// over the transposed CSR (row_ptr_t, col_t = row of each edge, perm = edge id),
// where p_e = exp(s_e - lse[row_e]) and ds_e = p_e * (<grad_out[row_e], v[col_e]> - delta[row_e]),
// delta[i] = <grad_out[i], out[i]> - grad_lse[i] (computed by the caller).
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "common/macros.h"
#include "common/reducers.h"

namespace pyengine::attention {

// Merging online-softmax states (max m, sum l of exp(s - m), accumulators acc),
// shared by both devices: folds (m2, l2) into (m, l) and returns the factors of
// acc = acc * f1 + acc2 * f2, or false when (m2, l2) is empty (nothing to add).
// Empty means l == 0, not m == -inf: a state whose only scores were NaN also
// has m = -inf, with l = NaN, and that NaN must reach the result, as in one pass.
template <typename acc_t>
PYE_HD bool merge_softmax_scales(acc_t& m, acc_t& l, acc_t m2, acc_t l2, acc_t& f1, acc_t& f2) {
  if (l2 == acc_t(0)) return false;
  if (l == acc_t(0)) {  // acc is all zeros: take the other state as it is
    m = m2;
    l = l2;
    f1 = acc_t(0);
    f2 = acc_t(1);
    return true;
  }
  const acc_t mx = m > m2 ? m : m2;
  f1 = fast_exp(m - mx);
  f2 = fast_exp(m2 - mx);
  l = l * f1 + l2 * f2;
  m = mx;
  return true;
}

// Validated, contiguous arguments of the forward op.
struct AttentionArgs {
  at::Tensor row_ptr, col, q, k, v, bias;  // bias undefined when absent
  int64_t num_rows, num_edges, num_src, heads, dk, dv;
};
AttentionArgs check_attention_args(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& q,
                                   const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& bias,
                                   double scale);

// Extra validated tensors of the backward op.
struct AttentionBackwardArgs {
  AttentionArgs fwd;
  at::Tensor grad_out, row_ptr_t, col_t, perm, lse, delta;
};
AttentionBackwardArgs check_attention_backward_args(const at::Tensor& grad_out, const at::Tensor& row_ptr,
                                                    const at::Tensor& col, const at::Tensor& row_ptr_t,
                                                    const at::Tensor& col_t, const at::Tensor& perm,
                                                    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                    const std::optional<at::Tensor>& bias, const at::Tensor& lse,
                                                    const at::Tensor& delta, double scale);

// dtype of lse / delta: float32 for float32/16/bf16 inputs, float64 for float64.
at::ScalarType acc_dtype(at::ScalarType t);

#define PYE_ATTENTION_DECLARE(DEV)                                                                                 \
  std::tuple<at::Tensor, at::Tensor> csr_attention_##DEV(const at::Tensor& row_ptr, const at::Tensor& col,         \
                                                         const at::Tensor& q, const at::Tensor& k,                 \
                                                         const at::Tensor& v, const std::optional<at::Tensor>& bias, \
                                                         double scale);                                            \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> csr_attention_backward_##DEV(                         \
      const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,   \
      const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& q, const at::Tensor& k,                   \
      const at::Tensor& v, const std::optional<at::Tensor>& bias, const at::Tensor& lse, const at::Tensor& delta, \
      double scale);

PYE_ATTENTION_DECLARE(cpu)
PYE_ATTENTION_DECLARE(cuda)
#undef PYE_ATTENTION_DECLARE

}  // namespace pyengine::attention
