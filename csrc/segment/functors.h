#pragma once
// Per-element functors plugged into the CSR engines (common/csr_engine_*.h).
// Loads produce one value per (edge e, channel c); stores receive a finished
// row state; maps write one output per (edge, channel). All are plain structs
// of pointers so the same code runs on the CPU and inside CUDA kernels.
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/macros.h"
#include "common/reducers.h"

namespace pyengine::segment {

template <typename scalar_t, typename acc_t>
struct DenseLoad {  // src[e, c]
  const scalar_t* src;
  int64_t C;
  PYE_HD acc_t operator()(int64_t e, int64_t c) const { return static_cast<acc_t>(src[e * C + c]); }
};

template <typename scalar_t, typename acc_t>
struct ProductLoad {  // a[e, c] * b[e, c]
  const scalar_t* a;
  const scalar_t* b;
  int64_t C;
  PYE_HD acc_t operator()(int64_t e, int64_t c) const {
    return static_cast<acc_t>(a[e * C + c]) * static_cast<acc_t>(b[e * C + c]);
  }
};

template <typename scalar_t, typename acc_t, typename index_t>
struct GatherLoad {  // values[e] * x[col[e], c]  (values may be null: all ones)
  const scalar_t* values;
  const index_t* col;
  const scalar_t* x;
  int64_t C;
  PYE_HD acc_t operator()(int64_t e, int64_t c) const {
    const acc_t v = static_cast<acc_t>(x[static_cast<int64_t>(col[e]) * C + c]);
    return values ? static_cast<acc_t>(values[e]) * v : v;
  }
};

template <typename scalar_t, typename acc_t>
struct SumStore {  // out[r, c] = sum (or mean; empty rows give 0)
  scalar_t* out;
  int64_t C;
  bool mean;
  template <class State>
  PYE_HD void operator()(int64_t r, int64_t c, const State& s, int64_t count) const {
    acc_t v = s.v;
    if (mean) v = count > 0 ? v / static_cast<acc_t>(count) : acc_t(0);
    out[r * C + c] = static_cast<scalar_t>(v);
  }
};

template <typename acc_t>
struct AccStore {  // raw accumulator of a SumOp, kept in acc_t
  acc_t* out;
  int64_t C;
  template <class State>
  PYE_HD void operator()(int64_t r, int64_t c, const State& s, int64_t) const {
    out[r * C + c] = s.v;
  }
};

template <typename scalar_t>
struct ExtremumStore {  // out[r, c] = max/min (0 for empty rows), arg[r, c] = edge or -1 (if arg)
  scalar_t* out;
  int64_t* arg;  // null when the winning edges are not wanted
  int64_t C;
  template <class State>
  PYE_HD void operator()(int64_t r, int64_t c, const State& s, int64_t) const {
    out[r * C + c] = s.arg >= 0 ? static_cast<scalar_t>(s.v) : static_cast<scalar_t>(0);
    if (arg) arg[r * C + c] = s.arg;
  }
};

template <typename acc_t>
struct LogSumExpStore {  // online-softmax statistics per row
  acc_t* max;
  acc_t* sum;
  int64_t C;
  template <class State>
  PYE_HD void operator()(int64_t r, int64_t c, const State& s, int64_t) const {
    max[r * C + c] = s.m;
    sum[r * C + c] = s.s;
  }
};

PYE_HD float log_of(float x) { return ::logf(x); }
PYE_HD double log_of(double x) { return ::log(x); }

// One entry of a (log-)softmax from its group's statistics (max m, sum of exp(x - m) den):
// exp(x - m) / den, or x - m - log(den). A group of only -inf (den == 0) gives 0 / -inf.
template <typename acc_t>
PYE_HD acc_t softmax_value(acc_t x, acc_t m, acc_t den, bool log) {
  if (den == acc_t(0)) return log ? -std::numeric_limits<acc_t>::infinity() : acc_t(0);
  return log ? x - m - log_of(den) : fast_exp(x - m) / den;
}

// Backward of one entry: with y the forward output, g its gradient and s the group's sum of
// softmax_grad_load(g, y), softmax: y (g - s) (s = sum g y); log-softmax: g - exp(y) s (s = sum g).
template <typename acc_t>
PYE_HD acc_t softmax_grad_load(acc_t g, acc_t y, bool log) {
  return log ? g : g * y;
}
template <typename acc_t>
PYE_HD acc_t softmax_grad(acc_t g, acc_t y, acc_t s, bool log) {
  return log ? g - fast_exp(y) * s : y * (g - s);
}

template <typename scalar_t, typename acc_t>
struct SoftmaxMap {  // out[e] = softmax_value(x[e], max[r], sum[r])
  const scalar_t* x;
  const acc_t* max;
  const acc_t* sum;
  scalar_t* out;
  int64_t C;
  bool log;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t c, int64_t) const {
    const int64_t i = r * C + c;
    out[e * C + c] = static_cast<scalar_t>(softmax_value(static_cast<acc_t>(x[e * C + c]), max[i], sum[i], log));
  }
};

template <typename scalar_t, typename acc_t>
struct SoftmaxGradLoad {  // softmax_grad_load(g[e, c], y[e, c])
  const scalar_t* g;
  const scalar_t* y;
  int64_t C;
  bool log;
  PYE_HD acc_t operator()(int64_t e, int64_t c) const {
    return softmax_grad_load(static_cast<acc_t>(g[e * C + c]), static_cast<acc_t>(y[e * C + c]), log);
  }
};

template <typename scalar_t, typename acc_t>
struct SoftmaxBackwardMap {  // grad_in[e] = softmax_grad(g[e], y[e], s[r])
  const scalar_t* grad;
  const scalar_t* y;
  const acc_t* dot;
  scalar_t* grad_in;
  int64_t C;
  bool log;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t c, int64_t) const {
    const int64_t i = e * C + c;
    grad_in[i] = static_cast<scalar_t>(
        softmax_grad(static_cast<acc_t>(grad[i]), static_cast<acc_t>(y[i]), dot[r * C + c], log));
  }
};

template <typename scalar_t, typename acc_t>
struct ReduceBackwardMap {  // sum/mean: broadcast grad to the row's edges; max/min: only to the arg edge
  const scalar_t* grad;
  const int64_t* arg;  // null for sum/mean
  bool mean;
  scalar_t* grad_src;
  int64_t C;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t c, int64_t len) const {
    const int64_t i = r * C + c;
    acc_t v = static_cast<acc_t>(grad[i]);
    if (arg) {
      v = arg[i] == e ? v : acc_t(0);
    } else if (mean) {
      v /= static_cast<acc_t>(len);
    }
    grad_src[e * C + c] = static_cast<scalar_t>(v);
  }
};

template <typename scalar_t, typename acc_t, typename index_t>
struct EdgeDotMap {  // out[e] = <a[r, :], b[col[e], :]>  (SDDMM; called with C = 1)
  const scalar_t* a;
  const scalar_t* b;
  const index_t* col;
  scalar_t* out;
  int64_t K;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t, int64_t) const {
    const scalar_t* ar = a + r * K;
    const scalar_t* bc = b + static_cast<int64_t>(col[e]) * K;
    acc_t acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += static_cast<acc_t>(ar[k]) * static_cast<acc_t>(bc[k]);
    out[e] = static_cast<scalar_t>(acc);
  }
};

}  // namespace pyengine::segment
