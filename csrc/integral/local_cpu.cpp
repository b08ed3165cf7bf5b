// CPU kernels of the local basis-integral ops (see local_basis.h for the math).
//
// Each row keeps a B x C block of accumulators and every edge adds
// psi[e, b] * w_j * f_j to each of its B rows, a contiguous (vectorised) axpy
// over C; the CSR engine's per-(edge, channel) loads would recompute the basis
// index and re-gather f_j for every b. Rows come in cost-balanced blocks
// (attention_rows_cpu.h); backward walks the transposed CSR the same way, so
// nothing is scattered and results are deterministic.
#include <torch/library.h>

#include <vector>

#include "common/dispatch.h"
#include "integral/attention_rows_cpu.h"
#include "integral/local_basis.h"

namespace pyengine::local {
namespace {

using integral_cpu::for_row_blocks;

template <typename scalar_t, typename index_t>
void forward_kernel(const LocalArgs& a, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = a.bases, C = a.channels;
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  const index_t* col = a.col.const_data_ptr<index_t>();
  const scalar_t* psi = a.psi.const_data_ptr<scalar_t>();
  const scalar_t* f = a.f.const_data_ptr<scalar_t>();
  const scalar_t* w = a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* o = out.data_ptr<scalar_t>();
  for_row_blocks(rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> acc(B * C), fa(C);
    for (int64_t r = r0; r < r1; ++r) {
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t e = rp[r]; e < rp[r + 1]; ++e) {
        const int64_t j = static_cast<int64_t>(col[e]);
        const acc_t wj = w ? static_cast<acc_t>(w[j]) : acc_t(1);
        for (int64_t c = 0; c < C; ++c) fa[c] = wj * static_cast<acc_t>(f[j * C + c]);
        for (int64_t b = 0; b < B; ++b) {
          const acc_t p = static_cast<acc_t>(psi[e * B + b]);
          acc_t* ab = acc.data() + b * C;
          for (int64_t c = 0; c < C; ++c) ab[c] += p * fa[c];
        }
      }
      for (int64_t i = 0; i < B * C; ++i) o[r * B * C + i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

// grad_psi[e, b] = w_j <grad_a[r, b, :], f_j>, row by row.
template <typename scalar_t, typename index_t>
void grad_psi_kernel(const LocalBackwardArgs& ba, at::Tensor& grad_psi) {
  using acc_t = at::opmath_type<scalar_t>;
  const LocalArgs& a = ba.fwd;
  const int64_t B = a.bases, C = a.channels;
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  const index_t* col = a.col.const_data_ptr<index_t>();
  const scalar_t* f = a.f.const_data_ptr<scalar_t>();
  const scalar_t* w = a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* ga = ba.grad_out.const_data_ptr<scalar_t>();
  scalar_t* gp = grad_psi.data_ptr<scalar_t>();
  for_row_blocks(rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> g(B * C);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t i = 0; i < B * C; ++i) g[i] = static_cast<acc_t>(ga[r * B * C + i]);
      for (int64_t e = rp[r]; e < rp[r + 1]; ++e) {
        const int64_t j = static_cast<int64_t>(col[e]);
        const scalar_t* fj = f + j * C;
        const acc_t wj = w ? static_cast<acc_t>(w[j]) : acc_t(1);
        for (int64_t b = 0; b < B; ++b) {
          const acc_t* gb = g.data() + b * C;
          acc_t s = 0;
          for (int64_t c = 0; c < C; ++c) s += gb[c] * static_cast<acc_t>(fj[c]);
          gp[e * B + b] = static_cast<scalar_t>(wj * s);
        }
      }
    }
  });
}

// Over the transposed CSR: g_j = sum_t sum_b psi[perm_t, b] grad_a[rows_t, b, :];
// grad_f[j] = w_j g_j, grad_w[j] = <f_j, g_j>.
template <typename scalar_t>
void adjoint_kernel(const LocalBackwardArgs& ba, scalar_t* grad_f, scalar_t* grad_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const LocalArgs& a = ba.fwd;
  const int64_t B = a.bases, C = a.channels;
  const int64_t* rpt = ba.row_ptr_t.const_data_ptr<int64_t>();
  const int64_t* rows = ba.col_t.const_data_ptr<int64_t>();
  const int64_t* perm = ba.perm.const_data_ptr<int64_t>();
  const scalar_t* psi = a.psi.const_data_ptr<scalar_t>();
  const scalar_t* f = a.f.const_data_ptr<scalar_t>();
  const scalar_t* w = a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* ga = ba.grad_out.const_data_ptr<scalar_t>();
  for_row_blocks(rpt, a.num_src, [&](int64_t j0, int64_t j1) {
    std::vector<acc_t> g(C);
    for (int64_t j = j0; j < j1; ++j) {
      std::fill(g.begin(), g.end(), acc_t(0));
      for (int64_t t = rpt[j]; t < rpt[j + 1]; ++t) {
        const scalar_t* pe = psi + perm[t] * B;
        const scalar_t* gi = ga + rows[t] * B * C;
        for (int64_t b = 0; b < B; ++b) {
          const acc_t p = static_cast<acc_t>(pe[b]);
          for (int64_t c = 0; c < C; ++c) g[c] += p * static_cast<acc_t>(gi[b * C + c]);
        }
      }
      if (grad_f) {
        const acc_t wj = w ? static_cast<acc_t>(w[j]) : acc_t(1);
        for (int64_t c = 0; c < C; ++c) grad_f[j * C + c] = static_cast<scalar_t>(wj * g[c]);
      }
      if (grad_w) {
        acc_t s = 0;
        for (int64_t c = 0; c < C; ++c) s += g[c] * static_cast<acc_t>(f[j * C + c]);
        grad_w[j] = static_cast<scalar_t>(s);
      }
    }
  });
}

}  // namespace

at::Tensor local_basis_aggregate_cpu(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& psi,
                                     const at::Tensor& f, const std::optional<at::Tensor>& weights) {
  const LocalArgs a = check_local_args(row_ptr, col, psi, f, weights);
  auto out = at::empty({a.num_rows, a.bases, a.channels}, a.f.options());
  PYE_DISPATCH_FLOATING(a.f.scalar_type(), "local_basis_aggregate", [&] {
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "local_basis_aggregate",
                            [&] { forward_kernel<scalar_t, index_t>(a, out); });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> local_basis_aggregate_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,
    const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& psi, const at::Tensor& f,
    const std::optional<at::Tensor>& weights, bool need_psi, bool need_f, bool need_weights) {
  const LocalBackwardArgs ba =
      check_local_backward_args(grad_out, row_ptr, col, row_ptr_t, col_t, perm, psi, f, weights);
  const LocalArgs& a = ba.fwd;
  need_weights = need_weights && a.weights.defined();
  auto grad_psi = at::empty({need_psi ? a.num_edges : 0, a.bases}, a.f.options());
  auto grad_f = at::empty({need_f ? a.num_src : 0, a.channels}, a.f.options());
  auto grad_w = at::empty({need_weights ? a.num_src : 0}, a.f.options());
  PYE_DISPATCH_FLOATING(a.f.scalar_type(), "local_basis_aggregate_backward", [&] {
    if (need_psi) {
      AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "local_basis_aggregate_backward",
                              [&] { grad_psi_kernel<scalar_t, index_t>(ba, grad_psi); });
    }
    if (need_f || need_weights) {
      adjoint_kernel<scalar_t>(ba, need_f ? grad_f.data_ptr<scalar_t>() : nullptr,
                               need_weights ? grad_w.data_ptr<scalar_t>() : nullptr);
    }
  });
  return {grad_psi, grad_f, grad_w};
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("local_basis_aggregate", &local_basis_aggregate_cpu);
  m.impl("local_basis_aggregate_backward", &local_basis_aggregate_backward_cpu);
}

}  // namespace pyengine::local
