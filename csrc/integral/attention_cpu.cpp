// CPU kernels of the fused CSR attention (see attention.h for the math).
//
// Rows are processed in cost-balanced blocks (attention_rows_cpu.h). The CSR
// engine's reduce() does not fit: its loads see only (edge, channel), while a
// score needs the whole query row and the state (max, sum, Dv accumulators) is
// per head.
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/dispatch.h"
#include "integral/attention.h"
#include "integral/attention_rows_cpu.h"

namespace pyengine::attention {
namespace {

using integral_cpu::for_row_blocks;

template <typename acc_t, typename scalar_t>
inline acc_t dot(const acc_t* a, const scalar_t* b, int64_t n) {
  acc_t s = 0;
  for (int64_t c = 0; c < n; ++c) s += a[c] * static_cast<acc_t>(b[c]);
  return s;
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

template <typename scalar_t, typename index_t>
void forward_kernel(const AttentionArgs& a, double scale, at::Tensor& out, at::Tensor& lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t H = a.heads, Dk = a.dk, Dv = a.dv;
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  const index_t* col = a.col.const_data_ptr<index_t>();
  const scalar_t* q = a.q.const_data_ptr<scalar_t>();
  const scalar_t* k = a.k.const_data_ptr<scalar_t>();
  const scalar_t* v = a.v.const_data_ptr<scalar_t>();
  const scalar_t* bias = a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* o = out.data_ptr<scalar_t>();
  acc_t* L = lse.data_ptr<acc_t>();
  const acc_t sc = static_cast<acc_t>(scale);
  for_row_blocks(rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> qa(Dk), acc(Dv);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t h = 0; h < H; ++h) {
        const scalar_t* qr = q + (r * H + h) * Dk;
        for (int64_t c = 0; c < Dk; ++c) qa[c] = sc * static_cast<acc_t>(qr[c]);
        std::fill(acc.begin(), acc.end(), acc_t(0));
        acc_t m = static_cast<acc_t>(kNegInf), l = 0;
        for (int64_t e = rp[r]; e < rp[r + 1]; ++e) {
          const int64_t j = static_cast<int64_t>(col[e]);
          acc_t s = dot(qa.data(), k + (j * H + h) * Dk, Dk);
          if (bias) s += static_cast<acc_t>(bias[e * H + h]);
          if (s == static_cast<acc_t>(kNegInf)) continue;  // masked edge: contributes nothing
          if (s > m) {  // new running max: rescale what was summed so far
            const acc_t f = std::exp(m - s);
            l *= f;
            for (int64_t c = 0; c < Dv; ++c) acc[c] *= f;
            m = s;
          }
          const acc_t p = std::exp(s - m);  // NaN scores propagate through here
          l += p;
          const scalar_t* vj = v + (j * H + h) * Dv;
          for (int64_t c = 0; c < Dv; ++c) acc[c] += p * static_cast<acc_t>(vj[c]);
        }
        scalar_t* orow = o + (r * H + h) * Dv;
        if (l == acc_t(0)) {  // empty or fully masked row
          for (int64_t c = 0; c < Dv; ++c) orow[c] = scalar_t(0);
          L[r * H + h] = static_cast<acc_t>(kNegInf);
        } else {
          const acc_t inv = acc_t(1) / l;
          for (int64_t c = 0; c < Dv; ++c) orow[c] = static_cast<scalar_t>(acc[c] * inv);
          L[r * H + h] = m + std::log(l);
        }
      }
    }
  });
}

// Row pass of backward: grad_q and grad_bias.
template <typename scalar_t, typename index_t>
void backward_rows_kernel(const AttentionBackwardArgs& b, double scale, at::Tensor& grad_q, at::Tensor& grad_bias) {
  using acc_t = at::opmath_type<scalar_t>;
  const AttentionArgs& a = b.fwd;
  const int64_t H = a.heads, Dk = a.dk, Dv = a.dv;
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  const index_t* col = a.col.const_data_ptr<index_t>();
  const scalar_t* q = a.q.const_data_ptr<scalar_t>();
  const scalar_t* k = a.k.const_data_ptr<scalar_t>();
  const scalar_t* v = a.v.const_data_ptr<scalar_t>();
  const scalar_t* bias = a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* go = b.grad_out.const_data_ptr<scalar_t>();
  const acc_t* L = b.lse.const_data_ptr<acc_t>();
  const acc_t* delta = b.delta.const_data_ptr<acc_t>();
  scalar_t* gq = grad_q.data_ptr<scalar_t>();
  scalar_t* gb = bias ? grad_bias.data_ptr<scalar_t>() : nullptr;
  const acc_t sc = static_cast<acc_t>(scale);
  for_row_blocks(rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> qa(Dk), ga(Dv), dq(Dk);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t rh = r * H + h;
        const acc_t lse = L[rh], dl = delta[rh];
        std::fill(dq.begin(), dq.end(), acc_t(0));
        const bool live = lse != static_cast<acc_t>(kNegInf);  // else every probability is 0
        for (int64_t c = 0; c < Dk; ++c) qa[c] = sc * static_cast<acc_t>(q[rh * Dk + c]);
        for (int64_t c = 0; c < Dv; ++c) ga[c] = static_cast<acc_t>(go[rh * Dv + c]);
        for (int64_t e = rp[r]; e < rp[r + 1]; ++e) {
          acc_t ds = 0;
          if (live) {
            const int64_t j = static_cast<int64_t>(col[e]);
            const scalar_t* kj = k + (j * H + h) * Dk;
            acc_t s = dot(qa.data(), kj, Dk);
            if (bias) s += static_cast<acc_t>(bias[e * H + h]);
            const acc_t p = std::exp(s - lse);
            ds = p * (dot(ga.data(), v + (j * H + h) * Dv, Dv) - dl);
            for (int64_t c = 0; c < Dk; ++c) dq[c] += ds * static_cast<acc_t>(kj[c]);
          }
          if (gb) gb[e * H + h] = static_cast<scalar_t>(ds);
        }
        for (int64_t c = 0; c < Dk; ++c) gq[rh * Dk + c] = static_cast<scalar_t>(sc * dq[c]);
      }
    }
  });
}

// Column pass of backward over the transposed CSR: grad_k and grad_v.
template <typename scalar_t, typename index_t>
void backward_cols_kernel(const AttentionBackwardArgs& b, double scale, at::Tensor& grad_k, at::Tensor& grad_v) {
  using acc_t = at::opmath_type<scalar_t>;
  const AttentionArgs& a = b.fwd;
  const int64_t H = a.heads, Dk = a.dk, Dv = a.dv;
  const int64_t* rpt = b.row_ptr_t.const_data_ptr<int64_t>();
  const int64_t* rows = b.col_t.const_data_ptr<int64_t>();
  const int64_t* perm = b.perm.const_data_ptr<int64_t>();
  const scalar_t* q = a.q.const_data_ptr<scalar_t>();
  const scalar_t* k = a.k.const_data_ptr<scalar_t>();
  const scalar_t* v = a.v.const_data_ptr<scalar_t>();
  const scalar_t* bias = a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* go = b.grad_out.const_data_ptr<scalar_t>();
  const acc_t* L = b.lse.const_data_ptr<acc_t>();
  const acc_t* delta = b.delta.const_data_ptr<acc_t>();
  scalar_t* gk = grad_k.data_ptr<scalar_t>();
  scalar_t* gv = grad_v.data_ptr<scalar_t>();
  const acc_t sc = static_cast<acc_t>(scale);
  for_row_blocks(rpt, a.num_src, [&](int64_t j0, int64_t j1) {
    std::vector<acc_t> ka(Dk), va(Dv), dk(Dk), dv(Dv);
    for (int64_t j = j0; j < j1; ++j) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t jh = j * H + h;
        for (int64_t c = 0; c < Dk; ++c) ka[c] = sc * static_cast<acc_t>(k[jh * Dk + c]);
        for (int64_t c = 0; c < Dv; ++c) va[c] = static_cast<acc_t>(v[jh * Dv + c]);
        std::fill(dk.begin(), dk.end(), acc_t(0));
        std::fill(dv.begin(), dv.end(), acc_t(0));
        for (int64_t t = rpt[j]; t < rpt[j + 1]; ++t) {
          const int64_t ih = rows[t] * H + h;
          const acc_t lse = L[ih];
          if (lse == static_cast<acc_t>(kNegInf)) continue;
          const scalar_t* qi = q + ih * Dk;
          const scalar_t* gi = go + ih * Dv;
          acc_t s = dot(ka.data(), qi, Dk);
          if (bias) s += static_cast<acc_t>(bias[perm[t] * H + h]);
          const acc_t p = std::exp(s - lse);
          const acc_t ds = p * (dot(va.data(), gi, Dv) - delta[ih]);
          for (int64_t c = 0; c < Dv; ++c) dv[c] += p * static_cast<acc_t>(gi[c]);
          for (int64_t c = 0; c < Dk; ++c) dk[c] += ds * static_cast<acc_t>(qi[c]);
        }
        for (int64_t c = 0; c < Dk; ++c) gk[jh * Dk + c] = static_cast<scalar_t>(sc * dk[c]);
        for (int64_t c = 0; c < Dv; ++c) gv[jh * Dv + c] = static_cast<scalar_t>(dv[c]);
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> csr_attention_cpu(const at::Tensor& row_ptr, const at::Tensor& col,
                                                     const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                     const std::optional<at::Tensor>& bias, double scale) {
  const AttentionArgs a = check_attention_args(row_ptr, col, q, k, v, bias, scale);
  auto out = at::empty({a.num_rows, a.heads, a.dv}, a.q.options());
  auto lse = at::empty({a.num_rows, a.heads}, a.q.options().dtype(acc_dtype(a.q.scalar_type())));
  PYE_DISPATCH_FLOATING(a.q.scalar_type(), "csr_attention", [&] {
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention",
                            [&] { forward_kernel<scalar_t, index_t>(a, scale, out, lse); });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> csr_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,
    const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& bias, const at::Tensor& lse, const at::Tensor& delta, double scale) {
  const AttentionBackwardArgs b =
      check_attention_backward_args(grad_out, row_ptr, col, row_ptr_t, col_t, perm, q, k, v, bias, lse, delta, scale);
  const AttentionArgs& a = b.fwd;
  auto grad_q = at::empty_like(a.q);
  auto grad_k = at::empty_like(a.k);
  auto grad_v = at::empty_like(a.v);
  auto grad_bias = a.bias.defined() ? at::empty_like(a.bias) : at::empty({0}, a.q.options());
  PYE_DISPATCH_FLOATING(a.q.scalar_type(), "csr_attention_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention_backward", [&] {
      backward_rows_kernel<scalar_t, index_t>(b, scale, grad_q, grad_bias);
    });
    backward_cols_kernel<scalar_t, int64_t>(b, scale, grad_k, grad_v);
  });
  return {grad_q, grad_k, grad_v, grad_bias};
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("csr_attention", &csr_attention_cpu);
  m.impl("csr_attention_backward", &csr_attention_backward_cpu);
}

}  // namespace pyengine::attention
