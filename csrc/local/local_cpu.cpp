// CPU kernels of the local basis-integral ops (see local_basis.h for the math).
//
// Each row keeps a B x C block of accumulators and every edge adds
// psi[e, b] * w_j * f_j to each of its B rows, a contiguous (vectorised) axpy
// over C; the CSR engine's per-(edge, channel) loads would recompute the basis
// index and re-gather f_j for every b. Rows come in cost-balanced blocks, long
// rows in pieces summed afterwards (attention_rows_cpu.h); backward walks the
// transposed CSR the same way, so nothing is scattered and results are
// deterministic.
#include <torch/library.h>

#include <vector>

#include "common/dispatch.h"
#include "common/row_blocks_cpu.h"
#include "local/local_basis.h"

namespace pyengine::local {
namespace {

using cpu::for_row_blocks;
using cpu::RowSplit;
using cpu::split_long_rows;
using cpu::sum_pieces;

// acc[b, :] += psi[e, b] * w_j * f_j for the edges [beg, end); fa is C scratch entries.
template <typename scalar_t, typename index_t, typename acc_t>
void fold_edges(const LocalArgs& a, int64_t beg, int64_t end, acc_t* acc, acc_t* fa) {
  const int64_t B = a.bases, C = a.channels;
  const index_t* col = a.col.const_data_ptr<index_t>();
  const scalar_t* psi = a.psi.const_data_ptr<scalar_t>();
  const scalar_t* f = a.f.const_data_ptr<scalar_t>();
  const scalar_t* w = a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr;
  for (int64_t e = beg; e < end; ++e) {
    const int64_t j = static_cast<int64_t>(col[e]);
    const acc_t wj = w ? static_cast<acc_t>(w[j]) : acc_t(1);
    for (int64_t c = 0; c < C; ++c) fa[c] = wj * static_cast<acc_t>(f[j * C + c]);
    for (int64_t b = 0; b < B; ++b) {
      const acc_t p = static_cast<acc_t>(psi[e * B + b]);
      acc_t* ab = acc + b * C;
      for (int64_t c = 0; c < C; ++c) ab[c] += p * fa[c];
    }
  }
}

template <typename scalar_t, typename index_t>
void forward_kernel(const LocalArgs& a, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t BC = a.bases * a.channels;
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  const RowSplit split = split_long_rows(rp, a.num_rows);
  for_row_blocks(rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> acc(BC), fa(a.channels);
    for (int64_t r = r0; r < r1; ++r) {
      if (split.is_long(rp, r)) continue;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      fold_edges<scalar_t, index_t>(a, rp[r], rp[r + 1], acc.data(), fa.data());
      for (int64_t i = 0; i < BC; ++i) o[r * BC + i] = static_cast<scalar_t>(acc[i]);
    }
  });
  if (split.rows.empty()) return;
  std::vector<acc_t> partial(split.num_pieces() * BC, acc_t(0));
  at::parallel_for(0, split.num_pieces(), 1, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> fa(a.channels);
    for (int64_t p = p0; p < p1; ++p) {
      fold_edges<scalar_t, index_t>(a, split.piece_beg[p], split.piece_end[p], partial.data() + p * BC, fa.data());
    }
  });
  sum_pieces(split, BC, partial, [&](int64_t r, const acc_t* sum) {
    for (int64_t i = 0; i < BC; ++i) o[r * BC + i] = static_cast<scalar_t>(sum[i]);
  });
}

// grad_psi[e, b] = w_j <g[b, :], f_j> for the edges [beg, end) of a row whose grad_a is g (B x C).
template <typename scalar_t, typename index_t, typename acc_t>
void grad_psi_edges(const LocalArgs& a, int64_t beg, int64_t end, const acc_t* g, scalar_t* gp) {
  const int64_t B = a.bases, C = a.channels;
  const index_t* col = a.col.const_data_ptr<index_t>();
  const scalar_t* f = a.f.const_data_ptr<scalar_t>();
  const scalar_t* w = a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr;
  for (int64_t e = beg; e < end; ++e) {
    const int64_t j = static_cast<int64_t>(col[e]);
    const scalar_t* fj = f + j * C;
    const acc_t wj = w ? static_cast<acc_t>(w[j]) : acc_t(1);
    for (int64_t b = 0; b < B; ++b) {
      const acc_t* gb = g + b * C;
      acc_t s = 0;
      for (int64_t c = 0; c < C; ++c) s += gb[c] * static_cast<acc_t>(fj[c]);
      gp[e * B + b] = static_cast<scalar_t>(wj * s);
    }
  }
}

template <typename scalar_t, typename index_t>
void grad_psi_kernel(const LocalBackwardArgs& ba, at::Tensor& grad_psi) {
  using acc_t = at::opmath_type<scalar_t>;
  const LocalArgs& a = ba.fwd;
  const int64_t BC = a.bases * a.channels;
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  const scalar_t* ga = ba.grad_out.const_data_ptr<scalar_t>();
  scalar_t* gp = grad_psi.data_ptr<scalar_t>();
  auto load = [&](int64_t r, acc_t* g) {
    for (int64_t i = 0; i < BC; ++i) g[i] = static_cast<acc_t>(ga[r * BC + i]);
  };
  // Edges are independent here: long rows are just run piece by piece in parallel.
  const RowSplit split = split_long_rows(rp, a.num_rows);
  for_row_blocks(rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> g(BC);
    for (int64_t r = r0; r < r1; ++r) {
      if (split.is_long(rp, r)) continue;
      load(r, g.data());
      grad_psi_edges<scalar_t, index_t>(a, rp[r], rp[r + 1], g.data(), gp);
    }
  });
  at::parallel_for(0, split.num_pieces(), 1, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> g(BC);
    for (int64_t p = p0; p < p1; ++p) {
      load(split.piece_row[p], g.data());
      grad_psi_edges<scalar_t, index_t>(a, split.piece_beg[p], split.piece_end[p], g.data(), gp);
    }
  });
}

// g += sum_t sum_b psi[perm_t, b] grad_a[rows_t, b, :] over transposed edges [beg, end).
template <typename scalar_t, typename acc_t>
void adjoint_edges(const LocalBackwardArgs& ba, int64_t beg, int64_t end, acc_t* g) {
  const int64_t B = ba.fwd.bases, C = ba.fwd.channels;
  const int64_t* rows = ba.col_t.const_data_ptr<int64_t>();
  const int64_t* perm = ba.perm.const_data_ptr<int64_t>();
  const scalar_t* psi = ba.fwd.psi.const_data_ptr<scalar_t>();
  const scalar_t* ga = ba.grad_out.const_data_ptr<scalar_t>();
  for (int64_t t = beg; t < end; ++t) {
    const scalar_t* pe = psi + perm[t] * B;
    const scalar_t* gi = ga + rows[t] * B * C;
    for (int64_t b = 0; b < B; ++b) {
      const acc_t p = static_cast<acc_t>(pe[b]);
      for (int64_t c = 0; c < C; ++c) g[c] += p * static_cast<acc_t>(gi[b * C + c]);
    }
  }
}

// Over the transposed CSR: g_j = sum over j's edges of sum_b psi[e, b] grad_a[row_e, b, :];
// grad_f[j] = w_j g_j, grad_w[j] = <f_j, g_j>.
template <typename scalar_t>
void adjoint_kernel(const LocalBackwardArgs& ba, scalar_t* grad_f, scalar_t* grad_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const LocalArgs& a = ba.fwd;
  const int64_t C = a.channels;
  const int64_t* rpt = ba.row_ptr_t.const_data_ptr<int64_t>();
  const scalar_t* f = a.f.const_data_ptr<scalar_t>();
  const scalar_t* w = a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr;
  auto finish = [&](int64_t j, const acc_t* g) {
    if (grad_f) {
      const acc_t wj = w ? static_cast<acc_t>(w[j]) : acc_t(1);
      for (int64_t c = 0; c < C; ++c) grad_f[j * C + c] = static_cast<scalar_t>(wj * g[c]);
    }
    if (grad_w) {
      acc_t s = 0;
      for (int64_t c = 0; c < C; ++c) s += g[c] * static_cast<acc_t>(f[j * C + c]);
      grad_w[j] = static_cast<scalar_t>(s);
    }
  };
  const RowSplit split = split_long_rows(rpt, a.num_src);
  for_row_blocks(rpt, a.num_src, [&](int64_t j0, int64_t j1) {
    std::vector<acc_t> g(C);
    for (int64_t j = j0; j < j1; ++j) {
      if (split.is_long(rpt, j)) continue;
      std::fill(g.begin(), g.end(), acc_t(0));
      adjoint_edges<scalar_t>(ba, rpt[j], rpt[j + 1], g.data());
      finish(j, g.data());
    }
  });
  if (split.rows.empty()) return;
  std::vector<acc_t> partial(split.num_pieces() * C, acc_t(0));
  at::parallel_for(0, split.num_pieces(), 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      adjoint_edges<scalar_t>(ba, split.piece_beg[p], split.piece_end[p], partial.data() + p * C);
    }
  });
  sum_pieces(split, C, partial, finish);
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
