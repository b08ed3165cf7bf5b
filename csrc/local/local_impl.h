#pragma once
// Bodies of the local basis-integral ops over a CSR engine's reduce/map
// interface, instantiated with cuda::CsrEngine in local_cuda.cu (warp per row
// or row piece, long rows split and merged). The CPU has hand-written row
// loops in local_cpu.cpp (vectorised B x C accumulators) instead.
#include <ATen/ATen.h>

#include "common/dispatch.h"
#include "common/macros.h"
#include "common/reducers.h"
#include "local/local_basis.h"

namespace pyengine::local {

// Value of flattened channel bc = b * C + c of edge e: psi[e, b] * w[col_e] * f[col_e, c].
template <typename scalar_t, typename acc_t, typename index_t>
struct BasisGatherLoad {
  const scalar_t* psi;
  const scalar_t* w;  // nullptr: all ones
  const index_t* col;
  const scalar_t* f;
  int64_t B, C;
  PYE_HD acc_t operator()(int64_t e, int64_t bc) const {
    const int64_t b = bc / C, c = bc - b * C;
    const int64_t j = static_cast<int64_t>(col[e]);
    acc_t coef = static_cast<acc_t>(psi[e * B + b]);
    if (w) coef *= static_cast<acc_t>(w[j]);
    return coef * static_cast<acc_t>(f[j * C + c]);
  }
};

// Transposed edge t (edge perm[t] of row rows[t]): sum_b psi[perm_t, b] * grad_a[rows_t, b, c].
template <typename scalar_t, typename acc_t>
struct BasisAdjointLoad {
  const scalar_t* psi;
  const scalar_t* grad_a;
  const int64_t* rows;
  const int64_t* perm;
  int64_t B, C;
  PYE_HD acc_t operator()(int64_t t, int64_t c) const {
    const scalar_t* p = psi + perm[t] * B;
    const scalar_t* g = grad_a + rows[t] * B * C + c;
    acc_t s = 0;
    for (int64_t b = 0; b < B; ++b) s += static_cast<acc_t>(p[b]) * static_cast<acc_t>(g[b * C]);
    return s;
  }
};

template <typename out_t, typename acc_t>
struct SumStoreTo {
  out_t* out;
  int64_t C;
  PYE_HD void operator()(int64_t r, int64_t c, const typename SumOp<acc_t>::State& s, int64_t) const {
    out[r * C + c] = static_cast<out_t>(s.v);
  }
};

// grad_psi[e, b] = w[col_e] * <grad_a[row, b, :], f[col_e, :]>.
template <typename scalar_t, typename acc_t, typename index_t>
struct BasisGradMap {
  const scalar_t* grad_a;
  const scalar_t* w;
  const index_t* col;
  const scalar_t* f;
  scalar_t* grad_psi;
  int64_t B, C;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t b, int64_t) const {
    const int64_t j = static_cast<int64_t>(col[e]);
    const scalar_t* g = grad_a + (r * B + b) * C;
    const scalar_t* fj = f + j * C;
    acc_t s = 0;
    for (int64_t c = 0; c < C; ++c) s += static_cast<acc_t>(g[c]) * static_cast<acc_t>(fj[c]);
    if (w) s *= static_cast<acc_t>(w[j]);
    grad_psi[e * B + b] = static_cast<scalar_t>(s);
  }
};

template <class Engine>
at::Tensor local_basis_aggregate_impl(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& psi,
                                      const at::Tensor& f, const std::optional<at::Tensor>& weights) {
  const LocalArgs a = check_local_args(row_ptr, col, psi, f, weights);
  const int64_t B = a.bases, C = a.channels;
  auto out = at::empty({a.num_rows, B, C}, a.f.options());
  const Engine engine(a.row_ptr, a.num_edges);
  PYE_DISPATCH_FLOATING(a.f.scalar_type(), "local_basis_aggregate", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "local_basis_aggregate", [&] {
      const BasisGatherLoad<scalar_t, acc_t, index_t> load{
          a.psi.const_data_ptr<scalar_t>(), a.weights.defined() ? a.weights.const_data_ptr<scalar_t>() : nullptr,
          a.col.const_data_ptr<index_t>(), a.f.const_data_ptr<scalar_t>(), B, C};
      engine.template reduce<SumOp<acc_t>>(B * C, load, SumStoreTo<scalar_t, acc_t>{out.data_ptr<scalar_t>(), B * C});
    });
  });
  return out;
}

template <class Engine>
std::tuple<at::Tensor, at::Tensor, at::Tensor> local_basis_aggregate_backward_impl(
    const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,
    const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& psi, const at::Tensor& f,
    const std::optional<at::Tensor>& weights, bool need_psi, bool need_f, bool need_weights) {
  const LocalBackwardArgs ba = check_local_backward_args(grad_out, row_ptr, col, row_ptr_t, col_t, perm, psi, f,
                                                         weights);
  const LocalArgs& a = ba.fwd;
  const int64_t B = a.bases, C = a.channels;
  const bool has_w = a.weights.defined();
  need_weights = need_weights && has_w;
  at::Tensor grad_psi = at::empty({need_psi ? a.num_edges : 0, B}, a.f.options());
  at::Tensor grad_f = at::empty({0, C}, a.f.options());
  at::Tensor grad_w = at::empty({0}, a.f.options());
  PYE_DISPATCH_FLOATING(a.f.scalar_type(), "local_basis_aggregate_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* w = has_w ? a.weights.const_data_ptr<scalar_t>() : nullptr;
    if (need_psi) {
      const Engine engine(a.row_ptr, a.num_edges);
      AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "local_basis_aggregate_backward", [&] {
        engine.map(B, BasisGradMap<scalar_t, acc_t, index_t>{ba.grad_out.const_data_ptr<scalar_t>(), w,
                                                             a.col.const_data_ptr<index_t>(),
                                                             a.f.const_data_ptr<scalar_t>(),
                                                             grad_psi.data_ptr<scalar_t>(), B, C});
      });
    }
    if (need_f || need_weights) {
      // g (N, C) in the accumulation type; grad_f and grad_w are cheap dense ops on it.
      auto g = at::empty({a.num_src, C}, a.f.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      const Engine engine_t(ba.row_ptr_t, a.num_edges);
      engine_t.template reduce<SumOp<acc_t>>(
          C,
          BasisAdjointLoad<scalar_t, acc_t>{a.psi.const_data_ptr<scalar_t>(), ba.grad_out.const_data_ptr<scalar_t>(),
                                            ba.col_t.const_data_ptr<int64_t>(), ba.perm.const_data_ptr<int64_t>(), B,
                                            C},
          SumStoreTo<acc_t, acc_t>{g.data_ptr<acc_t>(), C});
      if (need_f) grad_f = (has_w ? g * a.weights.to(g.scalar_type()).unsqueeze(1) : g).to(a.f.scalar_type());
      if (need_weights) grad_w = (g * a.f.to(g.scalar_type())).sum(1).to(a.f.scalar_type());
    }
  });
  return {grad_psi, grad_f, grad_w};
}

#define PYE_LOCAL_DEFINE(DEV, ENGINE)                                                                              \
  at::Tensor local_basis_aggregate_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& psi,  \
                                         const at::Tensor& f, const std::optional<at::Tensor>& weights) {           \
    return local_basis_aggregate_impl<ENGINE>(row_ptr, col, psi, f, weights);                                      \
  }                                                                                                                \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> local_basis_aggregate_backward_##DEV(                             \
      const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,   \
      const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& psi, const at::Tensor& f,                 \
      const std::optional<at::Tensor>& weights, bool need_psi, bool need_f, bool need_weights) {                   \
    return local_basis_aggregate_backward_impl<ENGINE>(grad_out, row_ptr, col, row_ptr_t, col_t, perm, psi, f,     \
                                                       weights, need_psi, need_f, need_weights);                   \
  }

}  // namespace pyengine::local
