// Fused GNO kernel integral on the CPU (OpenMP through at::parallel_for).
//
// The edge range [0, E) is cut into a few equal tasks per thread; each task walks
// its edges in cache-sized chunks, evaluates the MLP for a whole chunk at once
// (small GEMMs over edges of several rows: this is why the split is by edges and
// not by rows, unlike the segment engine) and folds the messages into the rows.
// Rows wholly inside a task are written directly; the (at most two) rows a task
// shares with its neighbours are merged afterwards, so one huge row is spread
// over every thread. Nothing of size E x hidden or E x C is allocated.
//
// Backward recomputes each chunk's activations. Gradients indexed by column
// (f_y, weights, y) and by row (x), and the MLP parameter gradients, are
// accumulated in per-thread buffers and summed at the end.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/csr_search.h"
#include "gno/gno.h"
#include "gno/gno_mlp_cpu.h"

namespace pyengine::gno {
namespace {

using cpu::ChunkScratch;

struct TaskSplit {
  int64_t num_tasks, num_edges;
  int64_t begin(int64_t t) const { return num_edges * t / num_tasks; }
};

TaskSplit split_edges(int64_t E, int64_t chunk) {
  const int64_t by_size = (E + chunk - 1) / chunk;
  return {std::max<int64_t>(1, std::min<int64_t>(by_size, int64_t(at::get_num_threads()) * 4)), E};
}

template <typename T, typename index_t>
void fill_chunk(const int64_t* rp, const index_t* col, int64_t e0, int64_t n, int64_t& r, ChunkScratch<T>& s) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t e = e0 + i;
    while (rp[r + 1] <= e) ++r;
    s.rows[i] = r;
    s.cols[i] = int64_t(col[e]);
  }
}

template <typename T, typename index_t>
at::Tensor forward_impl(const GnoArgs& a) {
  const int64_t M = a.num_rows, E = a.num_edges, C = a.channels;
  auto out = at::zeros({M, C}, a.y.options());
  if (E == 0 || M == 0) return out;
  const T* x = a.x.const_data_ptr<T>();
  const T* y = a.y.const_data_ptr<T>();
  const T* f = a.f_y.defined() ? a.f_y.const_data_ptr<T>() : nullptr;
  const T* w = a.weights.defined() ? a.weights.const_data_ptr<T>() : nullptr;
  const T* ew = a.edge_weights.defined() ? a.edge_weights.const_data_ptr<T>() : nullptr;
  const T* prm = a.params.const_data_ptr<T>();
  const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
  const index_t* col = a.col.const_data_ptr<index_t>();
  T* o = out.data_ptr<T>();
  const bool mean = a.reduction == Reduction::Mean;
  const bool kernel_only = !multiplies_f(a.transform);
  const int64_t chunk = cpu::chunk_edges(a);
  const TaskSplit split = split_edges(E, chunk);
  const int64_t nt = split.num_tasks;

  // Rows shared between tasks: up to two partial sums per task.
  std::vector<int64_t> part_row(2 * nt, -1);
  std::vector<T> part_acc(2 * nt * C, T(0));

  at::parallel_for(0, nt, 1, [&](int64_t t0, int64_t t1) {
    ChunkScratch<T> s(a, chunk);
    std::vector<T> acc(C);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t e_beg = split.begin(t), e_end = split.begin(t + 1);
      if (e_beg == e_end) continue;
      int64_t r = row_of_edge(rp, M, e_beg);
      int64_t cur = r, slot = 0;
      std::fill(acc.begin(), acc.end(), T(0));
      auto flush = [&](int64_t row) {
        const int64_t rb = rp[row], re = rp[row + 1];
        if (rb >= e_beg && re <= e_end) {
          const T scale = mean ? T(1) / T(re - rb) : T(1);
          T* orow = o + row * C;
          for (int64_t c = 0; c < C; ++c) orow[c] = acc[c] * scale;
        } else {
          part_row[2 * t + slot] = row;
          std::copy(acc.begin(), acc.end(), part_acc.begin() + (2 * t + slot) * C);
          ++slot;
        }
        std::fill(acc.begin(), acc.end(), T(0));
      };
      for (int64_t cb = e_beg; cb < e_end; cb += chunk) {
        const int64_t n = std::min(chunk, e_end - cb);
        fill_chunk<T, index_t>(rp, col, cb, n, r, s);
        cpu::mlp_forward<T>(a, x, y, f, prm, n, s);
        const T* K = s.p[a.num_layers - 1];
        for (int64_t i = 0; i < n; ++i) {
          if (s.rows[i] != cur) {
            flush(cur);
            cur = s.rows[i];
          }
          const int64_t j = s.cols[i];
          const T wj = (w ? w[j] : T(1)) * (ew ? ew[cb + i] : T(1));
          const T* Ki = K + i * C;
          if (kernel_only) {
            for (int64_t c = 0; c < C; ++c) acc[c] += Ki[c] * wj;
          } else {
            const T* fj = f + j * C;
            for (int64_t c = 0; c < C; ++c) acc[c] += Ki[c] * fj[c] * wj;
          }
        }
      }
      flush(cur);
    }
  });

  // Merge shared rows in task order, then scale them once.
  std::vector<int64_t> merged;
  for (int64_t k = 0; k < 2 * nt; ++k) {
    const int64_t row = part_row[k];
    if (row < 0) continue;
    T* orow = o + row * C;
    for (int64_t c = 0; c < C; ++c) orow[c] += part_acc[k * C + c];
    if (merged.empty() || merged.back() != row) merged.push_back(row);
  }
  if (mean) {
    for (const int64_t row : merged) {
      const T scale = T(1) / T(rp[row + 1] - rp[row]);
      for (int64_t c = 0; c < C; ++c) o[row * C + c] *= scale;
    }
  }
  return out;
}

template <typename T, typename index_t>
GnoGrads backward_impl(const at::Tensor& grad_out, const GnoArgs& a, GnoNeed need) {
  const int64_t M = a.num_rows, N = a.num_cols, E = a.num_edges, C = a.channels, d = a.coord_dim;
  const int64_t P = a.params.numel();
  const int64_t Cf = a.f_channels;
  const bool has_f = a.f_y.defined(), has_w = a.weights.defined(), has_ew = a.edge_weights.defined();
  need.f_y = need.f_y && has_f;
  need.weights = need.weights && has_w;
  need.edge_weights = need.edge_weights && has_ew;
  const bool nonlinear = feeds_f(a.transform);
  const bool kernel_only = !multiplies_f(a.transform);
  const bool mean = a.reduction == Reduction::Mean;
  const bool want_input = need.x || need.y || (nonlinear && need.f_y);

  // Per-thread accumulators; thread t owns slice t.
  const int64_t T_ = std::max<int64_t>(1, at::get_num_threads());
  auto opts = a.y.options();
  auto empty = [&]() -> at::Tensor { return at::empty({0}, opts); };  // a distinct tensor per output (no aliasing)
  auto acc_prm = at::zeros({T_, P}, opts);
  at::Tensor acc_y = need.y ? at::zeros({T_, N, d}, opts) : empty();
  at::Tensor acc_x = need.x ? at::zeros({T_, M, d}, opts) : empty();
  at::Tensor acc_f = need.f_y ? at::zeros({T_, N, Cf}, opts) : empty();
  at::Tensor acc_w = need.weights ? at::zeros({T_, N}, opts) : empty();
  // Each edge is visited exactly once, so its gradient is written in place (no per-thread copies).
  at::Tensor grad_ew = need.edge_weights ? at::zeros({E}, opts) : empty();

  if (E > 0 && M > 0) {
    const T* x = a.x.const_data_ptr<T>();
    const T* y = a.y.const_data_ptr<T>();
    const T* f = has_f ? a.f_y.const_data_ptr<T>() : nullptr;
    const T* w = has_w ? a.weights.const_data_ptr<T>() : nullptr;
    const T* ew = has_ew ? a.edge_weights.const_data_ptr<T>() : nullptr;
    T* gew = need.edge_weights ? grad_ew.data_ptr<T>() : nullptr;
    const T* prm = a.params.const_data_ptr<T>();
    const T* g = grad_out.const_data_ptr<T>();
    const int64_t* rp = a.row_ptr.const_data_ptr<int64_t>();
    const index_t* col = a.col.const_data_ptr<index_t>();
    const int64_t chunk = cpu::chunk_edges(a);
    const TaskSplit split = split_edges(E, chunk);
    const int64_t D0 = a.dims[0];

    at::parallel_for(0, split.num_tasks, 1, [&](int64_t t0, int64_t t1) {
      const int64_t tid = at::get_thread_num();
      TORCH_INTERNAL_ASSERT(tid >= 0 && tid < T_, "gno backward: thread id out of range");
      T* gprm = acc_prm.data_ptr<T>() + tid * P;
      T* gy = need.y ? acc_y.data_ptr<T>() + tid * N * d : nullptr;
      T* gx = need.x ? acc_x.data_ptr<T>() + tid * M * d : nullptr;
      T* gf = need.f_y ? acc_f.data_ptr<T>() + tid * N * Cf : nullptr;
      T* gw = need.weights ? acc_w.data_ptr<T>() + tid * N : nullptr;
      ChunkScratch<T> s(a, chunk);
      std::vector<T> grow(C);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t e_beg = split.begin(t), e_end = split.begin(t + 1);
        if (e_beg == e_end) continue;
        int64_t r = row_of_edge(rp, M, e_beg);
        for (int64_t cb = e_beg; cb < e_end; cb += chunk) {
          const int64_t n = std::min(chunk, e_end - cb);
          fill_chunk<T, index_t>(rp, col, cb, n, r, s);
          cpu::mlp_forward<T>(a, x, y, f, prm, n, s);
          const T* K = s.p[a.num_layers - 1];
          T* dK = s.g0;
          // Messages m_e = k_e * f_j * w_j * ew_e (kernel-only: k_e * w_j * ew_e) feed
          // out_i with weight 1 (sum) or 1 / len_i (mean).
          for (int64_t i = 0; i < n; ++i) {
            const int64_t ri = s.rows[i], j = s.cols[i], e = cb + i;
            const T scale = mean ? T(1) / T(rp[ri + 1] - rp[ri]) : T(1);
            const T wj = w ? w[j] : T(1);
            const T we = ew ? ew[e] : T(1);
            const T* gr = g + ri * C;
            const T* Ki = K + i * C;
            T* dKi = dK + i * C;
            // dot = <g_i, k_e (* f_j)>, the derivative of the row's output along the message.
            T dot = 0;
            if (kernel_only) {
              const T sw = scale * wj * we;
              for (int64_t c = 0; c < C; ++c) {
                dKi[c] = gr[c] * sw;
                dot += gr[c] * Ki[c];
              }
            } else {
              const T* fj = f + j * C;
              const T sw = scale * wj * we;
              for (int64_t c = 0; c < C; ++c) {
                dKi[c] = gr[c] * fj[c] * sw;
                dot += gr[c] * Ki[c] * fj[c];
              }
              if (gf) {
                T* gfj = gf + j * C;
                for (int64_t c = 0; c < C; ++c) gfj[c] += gr[c] * Ki[c] * sw;
              }
            }
            if (gw) gw[j] += dot * scale * we;
            if (gew) gew[e] = dot * scale * wj;
          }
          const T* dz0 = cpu::mlp_backward<T>(a, prm, n, s, gprm, want_input);
          if (!want_input) continue;
          for (int64_t i = 0; i < n; ++i) {
            const T* dzi = dz0 + i * D0;
            const int64_t ri = s.rows[i], j = s.cols[i];
            if (gx) {
              for (int64_t k = 0; k < d; ++k) gx[ri * d + k] += dzi[k];
            }
            if (gy) {
              for (int64_t k = 0; k < d; ++k) gy[j * d + k] += dzi[d + k];
            }
            if (nonlinear && gf) {
              T* gfj = gf + j * Cf;
              for (int64_t c = 0; c < Cf; ++c) gfj[c] += dzi[2 * d + c];
            }
          }
        }
      }
    });
  }

  auto total = [&](const at::Tensor& acc) { return acc.numel() == 0 ? acc : (T_ == 1 ? acc[0] : acc.sum(0)); };
  return {total(acc_y), total(acc_x), total(acc_f), total(acc_w), grad_ew, total(acc_prm)};
}

template <typename F>
auto dispatch_types(const GnoArgs& a, F&& fn) {
  return AT_DISPATCH_FLOATING_TYPES(a.y.scalar_type(), "gno_integral_cpu", [&] {
    if (a.col_is_int32) return fn(scalar_t(0), int32_t(0));
    return fn(scalar_t(0), int64_t(0));
  });
}

}  // namespace

at::Tensor gno_integral_cpu(const at::Tensor& y, const at::Tensor& x, const at::Tensor& row_ptr, const at::Tensor& col,
                            const std::optional<at::Tensor>& f_y, const std::optional<at::Tensor>& weights,
                            const std::optional<at::Tensor>& edge_weights, const at::Tensor& params,
                            at::IntArrayRef dims, c10::string_view activation, c10::string_view transform,
                            c10::string_view reduction) {
  const GnoArgs a =
      check_gno_args(y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction);
  return dispatch_types(a, [&](auto tv, auto iv) {
    return forward_impl<decltype(tv), decltype(iv)>(a);
  });
}

GnoGrads gno_integral_backward_cpu(const at::Tensor& grad_out, const at::Tensor& y, const at::Tensor& x,
                                   const at::Tensor& row_ptr, const at::Tensor& col,
                                   const std::optional<at::Tensor>& f_y, const std::optional<at::Tensor>& weights,
                                   const std::optional<at::Tensor>& edge_weights, const at::Tensor& params,
                                   at::IntArrayRef dims, c10::string_view activation, c10::string_view transform,
                                   c10::string_view reduction, std::array<bool, 5> need) {
  const GnoArgs a =
      check_gno_args(y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction);
  const at::Tensor g = check_gno_grad_out(grad_out, a);
  const GnoNeed nd = parse_need(need);
  return dispatch_types(a, [&](auto tv, auto iv) {
    return backward_impl<decltype(tv), decltype(iv)>(g, a, nd);
  });
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("gno_integral", &gno_integral_cpu);
  m.impl("gno_integral_backward", &gno_integral_backward_cpu);
}

}  // namespace pyengine::gno
