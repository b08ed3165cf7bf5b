// CPU kernels of the fused CSR attention (see attention.h for the math).
//
// Rows are processed in cost-balanced blocks, long rows in pieces merged
// afterwards (attention_rows_cpu.h). The CSR engine's reduce() does not fit:
// its loads see only (edge, channel), while a score needs the whole query row
// and the state (max, sum, Dv accumulators) is per head.
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <vector>

#include "common/dispatch.h"
#include "attention/attention.h"
#include "common/row_blocks_cpu.h"

namespace pyengine::attention {
namespace {

using cpu::for_row_blocks;
using cpu::sum_pieces;

// Eight independent partial sums: a single running sum is one serial chain of n dependent adds
// (the compiler may not reorder a floating-point reduction), which bounded every score and
// <v_j, dO_i> by the add latency; the fixed-width lanes vectorise. Head dims are usually 8-64.
template <typename acc_t, typename scalar_t>
inline acc_t dot(const acc_t* a, const scalar_t* b, int64_t n) {
  constexpr int64_t kLanes = 8;
  acc_t lane[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lane[l] += a[c + l] * static_cast<acc_t>(b[c + l]);
  for (; c < n; ++c) lane[c % kLanes] += a[c] * static_cast<acc_t>(b[c]);
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Raw pointers and sizes of the forward operands.
template <typename scalar_t, typename index_t>
struct Operands {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t H, Dk, Dv;
  const int64_t* rp;
  const index_t* col;
  const scalar_t *q, *k, *v, *bias;
  acc_t scale;
  Operands(const AttentionArgs& a, double sc)
      : H(a.heads), Dk(a.dk), Dv(a.dv), rp(a.row_ptr.const_data_ptr<int64_t>()),
        col(a.col.const_data_ptr<index_t>()), q(a.q.const_data_ptr<scalar_t>()), k(a.k.const_data_ptr<scalar_t>()),
        v(a.v.const_data_ptr<scalar_t>()), bias(a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr),
        scale(static_cast<acc_t>(sc)) {}

  // qa = scale * q[r, h].
  void load_query(int64_t r, int64_t h, acc_t* qa) const {
    const scalar_t* qr = q + (r * H + h) * Dk;
    for (int64_t c = 0; c < Dk; ++c) qa[c] = scale * static_cast<acc_t>(qr[c]);
  }
  acc_t score(const acc_t* qa, int64_t e, int64_t j, int64_t h) const {
    acc_t s = dot(qa, k + (j * H + h) * Dk, Dk);
    if (bias) s += static_cast<acc_t>(bias[e * H + h]);
    return s;
  }
};

// Online-softmax state of one row, per head h: running max m, sum l and accumulators acc[Dv],
// stored as st[h * (2 + Dv)] = {m, l, acc...}. Folds edges [beg, end) of the row into it, every
// head of an edge together (a source's values for all heads are H * Dv contiguous values, read
// once per edge). qa (H, Dk) is the scaled query.
template <typename scalar_t, typename index_t, typename acc_t>
void fold_edges(const Operands<scalar_t, index_t>& o, int64_t beg, int64_t end, const acc_t* qa, acc_t* st) {
  const int64_t H = o.H, Dk = o.Dk, Dv = o.Dv, width = 2 + Dv;
  for (int64_t e = beg; e < end; ++e) {
    const int64_t j = static_cast<int64_t>(o.col[e]);
    const scalar_t* vj = o.v + j * H * Dv;
    for (int64_t h = 0; h < H; ++h) {
      const acc_t s = o.score(qa + h * Dk, e, j, h);
      if (s == static_cast<acc_t>(kNegInf)) continue;  // masked edge: contributes nothing
      acc_t& m = st[h * width];
      acc_t& l = st[h * width + 1];
      acc_t* acc = st + h * width + 2;
      if (s > m) {  // new running max: rescale what was summed so far
        const acc_t f = std::exp(m - s);
        l *= f;
        for (int64_t c = 0; c < Dv; ++c) acc[c] *= f;
        m = s;
      }
      const acc_t p = std::exp(s - m);  // NaN scores propagate through here
      l += p;
      const scalar_t* vjh = vj + h * Dv;
      for (int64_t c = 0; c < Dv; ++c) acc[c] += p * static_cast<acc_t>(vjh[c]);
    }
  }
}

// The empty state of a row: m = -inf, l = 0, acc = 0 for every head.
template <typename acc_t>
void reset_state(acc_t* st, int64_t H, int64_t Dv) {
  for (int64_t h = 0; h < H; ++h) {
    acc_t* sh = st + h * (2 + Dv);
    sh[0] = static_cast<acc_t>(kNegInf);
    std::fill(sh + 1, sh + 2 + Dv, acc_t(0));
  }
}

// (m, l, acc) <- merge with (m2, l2, acc2), as if their edges had been folded in.
template <typename acc_t>
void merge_state(acc_t& m, acc_t& l, acc_t* acc, acc_t m2, acc_t l2, const acc_t* acc2, int64_t Dv) {
  acc_t f1, f2;
  if (!merge_softmax_scales(m, l, m2, l2, f1, f2)) return;
  for (int64_t c = 0; c < Dv; ++c) acc[c] = acc[c] * f1 + acc2[c] * f2;
}

template <typename scalar_t, typename acc_t>
void finish_row(int64_t rh, int64_t Dv, acc_t m, acc_t l, const acc_t* acc, scalar_t* out, acc_t* lse) {
  scalar_t* orow = out + rh * Dv;
  if (l == acc_t(0)) {  // empty or fully masked row
    for (int64_t c = 0; c < Dv; ++c) orow[c] = scalar_t(0);
    lse[rh] = static_cast<acc_t>(kNegInf);
  } else {
    const acc_t inv = acc_t(1) / l;
    for (int64_t c = 0; c < Dv; ++c) orow[c] = static_cast<scalar_t>(acc[c] * inv);
    lse[rh] = m + std::log(l);
  }
}

template <typename scalar_t, typename index_t>
void forward_kernel(const AttentionArgs& a, double scale, at::Tensor& out, at::Tensor& lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const Operands<scalar_t, index_t> o(a, scale);
  const int64_t H = o.H, Dk = o.Dk, Dv = o.Dv;
  scalar_t* out_p = out.data_ptr<scalar_t>();
  acc_t* lse_p = lse.data_ptr<acc_t>();
  const int64_t width = 2 + Dv;
  auto load_queries = [&](int64_t r, acc_t* qa) {
    for (int64_t h = 0; h < H; ++h) o.load_query(r, h, qa + h * Dk);
  };
  const cpu::RowSplit split = cpu::split_long_rows(o.rp, a.num_rows);
  for_row_blocks(o.rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> qa(H * Dk), st(H * width);
    for (int64_t r = r0; r < r1; ++r) {
      if (split.is_long(o.rp, r)) continue;
      load_queries(r, qa.data());
      reset_state(st.data(), H, Dv);
      fold_edges(o, o.rp[r], o.rp[r + 1], qa.data(), st.data());
      for (int64_t h = 0; h < H; ++h) {
        const acc_t* sh = st.data() + h * width;
        finish_row(r * H + h, Dv, sh[0], sh[1], sh + 2, out_p, lse_p);
      }
    }
  });
  if (split.rows.empty()) return;
  // Long rows: each piece folds into its own state (m, l, acc[Dv]) per head, then the pieces merge.
  std::vector<acc_t> partial(split.num_pieces() * H * width);
  at::parallel_for(0, split.num_pieces(), 1, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> qa(H * Dk);
    for (int64_t p = p0; p < p1; ++p) {
      acc_t* st = partial.data() + p * H * width;
      load_queries(split.piece_row[p], qa.data());
      reset_state(st, H, Dv);
      fold_edges(o, split.piece_beg[p], split.piece_end[p], qa.data(), st);
    }
  });
  at::parallel_for(0, int64_t(split.rows.size()), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t h = 0; h < H; ++h) {
        acc_t* st = partial.data() + (split.first_piece[i] * H + h) * width;
        for (int64_t p = split.first_piece[i] + 1; p < split.first_piece[i + 1]; ++p) {
          const acc_t* o2 = partial.data() + (p * H + h) * width;
          merge_state(st[0], st[1], st + 2, o2[0], o2[1], o2 + 2, Dv);
        }
        finish_row(split.rows[i] * H + h, Dv, st[0], st[1], st + 2, out_p, lse_p);
      }
    }
  });
}

// Per-edge softmax terms kept from the row pass for the column pass: p[e, h] and ds[e, h].
// Without them the column pass recomputes each edge's score, exponential and <v_j, dO_i> (about
// half the backward's arithmetic); with them it is two axpys per edge. They cost 2 E H
// accumulators, so graphs above edge_terms_limit_bytes() recompute instead of storing.
template <typename acc_t>
struct EdgeTerms {
  acc_t* p = nullptr;
  acc_t* ds = nullptr;
};

// 256 MiB, or PYENGINE_ATTENTION_EDGE_TERMS_LIMIT (bytes; read per call, so the tests can take the
// recomputing path on small graphs by setting it to 0).
inline int64_t edge_terms_limit_bytes() {
  const char* env = std::getenv("PYENGINE_ATTENTION_EDGE_TERMS_LIMIT");
  return env ? std::strtoll(env, nullptr, 10) : (int64_t(256) << 20);
}

// The backward passes take every head of an edge together: a source's keys and values (and a
// row's queries and output gradients) are H * D contiguous values, read once per edge rather
// than once per edge and head, and the kept edge terms of an edge share one cache line.

// Row pass of backward, edges [beg, end) of row r, all heads: dq[h] += sum_e ds_eh k_jh
// (unscaled), grad_bias[e, h] = ds_eh (and the edge terms, when kept). qa (H, Dk) is the
// scaled query, ga (H, Dv) the output gradient, lse and delta (H,) the row's.
template <typename scalar_t, typename index_t, typename acc_t>
void backward_row_edges(const Operands<scalar_t, index_t>& o, int64_t beg, int64_t end, const acc_t* qa,
                        const acc_t* ga, const acc_t* lse, const acc_t* delta, acc_t* dq, scalar_t* gb,
                        EdgeTerms<acc_t> terms) {
  const int64_t H = o.H, Dk = o.Dk, Dv = o.Dv;
  for (int64_t e = beg; e < end; ++e) {
    const int64_t j = static_cast<int64_t>(o.col[e]);
    const scalar_t* kj = o.k + j * H * Dk;
    const scalar_t* vj = o.v + j * H * Dv;
    for (int64_t h = 0; h < H; ++h) {
      acc_t p = 0, ds = 0;
      if (lse[h] != static_cast<acc_t>(kNegInf)) {  // else every probability of the row is 0
        p = std::exp(o.score(qa + h * Dk, e, j, h) - lse[h]);
        ds = p * (dot(ga + h * Dv, vj + h * Dv, Dv) - delta[h]);
        acc_t* dqh = dq + h * Dk;
        const scalar_t* kjh = kj + h * Dk;
        for (int64_t c = 0; c < Dk; ++c) dqh[c] += ds * static_cast<acc_t>(kjh[c]);
      }
      if (gb) gb[e * H + h] = static_cast<scalar_t>(ds);
      if (terms.p) {
        terms.p[e * H + h] = p;
        terms.ds[e * H + h] = ds;
      }
    }
  }
}

template <typename scalar_t, typename index_t, typename acc_t>
void backward_rows_kernel(const AttentionBackwardArgs& b, double scale, at::Tensor& grad_q, at::Tensor& grad_bias,
                          EdgeTerms<acc_t> terms) {
  const AttentionArgs& a = b.fwd;
  const Operands<scalar_t, index_t> o(a, scale);
  const int64_t H = o.H, Dk = o.Dk, Dv = o.Dv;
  const scalar_t* go = b.grad_out.const_data_ptr<scalar_t>();
  const acc_t* L = b.lse.const_data_ptr<acc_t>();
  const acc_t* delta = b.delta.const_data_ptr<acc_t>();
  scalar_t* gq = grad_q.data_ptr<scalar_t>();
  scalar_t* gb = o.bias ? grad_bias.data_ptr<scalar_t>() : nullptr;
  auto load_row = [&](int64_t r, acc_t* qa, acc_t* ga) {
    for (int64_t h = 0; h < H; ++h) o.load_query(r, h, qa + h * Dk);
    for (int64_t c = 0; c < H * Dv; ++c) ga[c] = static_cast<acc_t>(go[r * H * Dv + c]);
  };
  const cpu::RowSplit split = cpu::split_long_rows(o.rp, a.num_rows);
  for_row_blocks(o.rp, a.num_rows, [&](int64_t r0, int64_t r1) {
    std::vector<acc_t> qa(H * Dk), ga(H * Dv), dq(H * Dk);
    for (int64_t r = r0; r < r1; ++r) {
      if (split.is_long(o.rp, r)) continue;
      load_row(r, qa.data(), ga.data());
      std::fill(dq.begin(), dq.end(), acc_t(0));
      backward_row_edges(o, o.rp[r], o.rp[r + 1], qa.data(), ga.data(), L + r * H, delta + r * H, dq.data(), gb,
                         terms);
      for (int64_t c = 0; c < H * Dk; ++c) gq[r * H * Dk + c] = static_cast<scalar_t>(o.scale * dq[c]);
    }
  });
  if (split.rows.empty()) return;
  std::vector<acc_t> partial(split.num_pieces() * H * Dk, acc_t(0));
  at::parallel_for(0, split.num_pieces(), 1, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> qa(H * Dk), ga(H * Dv);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r = split.piece_row[p];
      load_row(r, qa.data(), ga.data());
      backward_row_edges(o, split.piece_beg[p], split.piece_end[p], qa.data(), ga.data(), L + r * H, delta + r * H,
                         partial.data() + p * H * Dk, gb, terms);
    }
  });
  sum_pieces(split, H * Dk, partial, [&](int64_t r, const acc_t* sum) {
    for (int64_t i = 0; i < H * Dk; ++i) gq[r * H * Dk + i] = static_cast<scalar_t>(o.scale * sum[i]);
  });
}

// Column pass of backward over the transposed CSR, transposed edges [beg, end) of source j, all
// heads: dk[h] += sum ds q_ih (unscaled), dv[h] += sum p dO_ih. ka (H, Dk) is the scaled key, va
// (H, Dv) the value (used only when the edge terms are recomputed).
template <typename scalar_t, typename acc_t>
void backward_col_edges(const AttentionBackwardArgs& b, int64_t H, int64_t Dk, int64_t Dv, int64_t beg, int64_t end,
                        const acc_t* ka, const acc_t* va, acc_t* dk, acc_t* dv, EdgeTerms<acc_t> terms) {
  const int64_t* rows = b.col_t.const_data_ptr<int64_t>();
  const int64_t* perm = b.perm.const_data_ptr<int64_t>();
  const scalar_t* q = b.fwd.q.const_data_ptr<scalar_t>();
  const scalar_t* bias = b.fwd.bias.defined() ? b.fwd.bias.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* go = b.grad_out.const_data_ptr<scalar_t>();
  const acc_t* L = b.lse.const_data_ptr<acc_t>();
  const acc_t* delta = b.delta.const_data_ptr<acc_t>();
  for (int64_t t = beg; t < end; ++t) {
    const int64_t i = rows[t], e = perm[t];
    const scalar_t* qi = q + i * H * Dk;
    const scalar_t* gi = go + i * H * Dv;
    for (int64_t h = 0; h < H; ++h) {
      acc_t p, ds;
      if (terms.p) {  // kept by the row pass: no score, exponential or <v_j, dO_i> to recompute
        p = terms.p[e * H + h];
        ds = terms.ds[e * H + h];
      } else {
        const acc_t lse = L[i * H + h];
        if (lse == static_cast<acc_t>(kNegInf)) continue;
        acc_t s = dot(ka + h * Dk, qi + h * Dk, Dk);
        if (bias) s += static_cast<acc_t>(bias[e * H + h]);
        p = std::exp(s - lse);
        ds = p * (dot(va + h * Dv, gi + h * Dv, Dv) - delta[i * H + h]);
      }
      acc_t* dvh = dv + h * Dv;
      acc_t* dkh = dk + h * Dk;
      const scalar_t* gih = gi + h * Dv;
      const scalar_t* qih = qi + h * Dk;
      for (int64_t c = 0; c < Dv; ++c) dvh[c] += p * static_cast<acc_t>(gih[c]);
      for (int64_t c = 0; c < Dk; ++c) dkh[c] += ds * static_cast<acc_t>(qih[c]);
    }
  }
}

template <typename scalar_t, typename acc_t>
void backward_cols_kernel(const AttentionBackwardArgs& b, double scale, at::Tensor& grad_k, at::Tensor& grad_v,
                          EdgeTerms<acc_t> terms) {
  const AttentionArgs& a = b.fwd;
  const int64_t H = a.heads, Dk = a.dk, Dv = a.dv;
  const int64_t* rpt = b.row_ptr_t.const_data_ptr<int64_t>();
  const scalar_t* k = a.k.const_data_ptr<scalar_t>();
  const scalar_t* v = a.v.const_data_ptr<scalar_t>();
  scalar_t* gk = grad_k.data_ptr<scalar_t>();
  scalar_t* gv = grad_v.data_ptr<scalar_t>();
  const acc_t sc = static_cast<acc_t>(scale);
  const int64_t HK = H * Dk, HV = H * Dv, width = HK + HV;
  auto load_kv = [&](int64_t j, acc_t* ka, acc_t* va) {
    if (terms.p) return;  // only the recomputation reads them
    for (int64_t c = 0; c < HK; ++c) ka[c] = sc * static_cast<acc_t>(k[j * HK + c]);
    for (int64_t c = 0; c < HV; ++c) va[c] = static_cast<acc_t>(v[j * HV + c]);
  };
  // per source: dk (H, Dk) then dv (H, Dv)
  auto store = [&](int64_t j, const acc_t* dkv) {
    for (int64_t c = 0; c < HK; ++c) gk[j * HK + c] = static_cast<scalar_t>(sc * dkv[c]);
    for (int64_t c = 0; c < HV; ++c) gv[j * HV + c] = static_cast<scalar_t>(dkv[HK + c]);
  };
  const cpu::RowSplit split = cpu::split_long_rows(rpt, a.num_src);
  for_row_blocks(rpt, a.num_src, [&](int64_t j0, int64_t j1) {
    std::vector<acc_t> ka(HK), va(HV), dkv(width);
    for (int64_t j = j0; j < j1; ++j) {
      if (split.is_long(rpt, j)) continue;
      load_kv(j, ka.data(), va.data());
      std::fill(dkv.begin(), dkv.end(), acc_t(0));
      backward_col_edges<scalar_t>(b, H, Dk, Dv, rpt[j], rpt[j + 1], ka.data(), va.data(), dkv.data(),
                                   dkv.data() + HK, terms);
      store(j, dkv.data());
    }
  });
  if (split.rows.empty()) return;
  std::vector<acc_t> partial(split.num_pieces() * width, acc_t(0));
  at::parallel_for(0, split.num_pieces(), 1, [&](int64_t p0, int64_t p1) {
    std::vector<acc_t> ka(HK), va(HV);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t j = split.piece_row[p];
      acc_t* st = partial.data() + p * width;
      load_kv(j, ka.data(), va.data());
      backward_col_edges<scalar_t>(b, H, Dk, Dv, split.piece_beg[p], split.piece_end[p], ka.data(), va.data(), st,
                                   st + HK, terms);
    }
  });
  sum_pieces(split, width, partial, [&](int64_t j, const acc_t* sum) { store(j, sum); });
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
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t edge_heads = a.col.numel() * a.heads;
    std::unique_ptr<acc_t[]> kept;  // every entry is written by the row pass: no initialisation
    EdgeTerms<acc_t> terms;
    if (edge_heads > 0 && 2 * edge_heads * int64_t(sizeof(acc_t)) <= edge_terms_limit_bytes()) {
      kept.reset(new acc_t[2 * edge_heads]);
      terms.p = kept.get();
      terms.ds = kept.get() + edge_heads;
    }
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention_backward", [&] {
      backward_rows_kernel<scalar_t, index_t, acc_t>(b, scale, grad_q, grad_bias, terms);
    });
    backward_cols_kernel<scalar_t, acc_t>(b, scale, grad_k, grad_v, terms);
  });
  return {grad_q, grad_k, grad_v, grad_bias};
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("csr_attention", &csr_attention_cpu);
  m.impl("csr_attention_backward", &csr_attention_backward_cpu);
}

}  // namespace pyengine::attention
