#pragma once
// Segment log-softmax (torch_scatter's scatter_log_softmax, over CSR rows):
// out[e] = x[e] - max_row - log(sum_row exp(x - max_row)), and its backward
// grad_in[e] = g[e] - exp(out[e]) * sum_row(g). Bodies are templates over a CSR
// engine, instantiated by segment_log_softmax_{cpu.cpp,cuda.cu}, like segment_impl.h.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "common/checks.h"
#include "common/dispatch.h"
#include "common/reducers.h"
#include "segment/functors.h"
#include "segment/segment.h"

namespace pyengine::segment {

PYE_HD float log_of(float x) { return ::logf(x); }
PYE_HD double log_of(double x) { return ::log(x); }

template <typename scalar_t, typename acc_t>
struct LogSoftmaxMap {  // out[e] = x[e] - max[r] - log(sum[r]); a row of only -inf gives -inf (log of 0)
  const scalar_t* x;
  const acc_t* max;
  const acc_t* sum;
  scalar_t* out;
  int64_t C;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t c, int64_t) const {
    const acc_t den = sum[r * C + c];
    const acc_t v = den == acc_t(0) ? -std::numeric_limits<acc_t>::infinity()
                                    : static_cast<acc_t>(x[e * C + c]) - max[r * C + c] - log_of(den);
    out[e * C + c] = static_cast<scalar_t>(v);
  }
};

template <typename scalar_t, typename acc_t>
struct LogSoftmaxBackwardMap {  // grad_in[e] = g[e] - exp(y[e]) * sum_row(g)
  const scalar_t* grad;
  const scalar_t* y;
  const acc_t* gsum;
  scalar_t* grad_in;
  int64_t C;
  PYE_HD void operator()(int64_t r, int64_t e, int64_t c, int64_t) const {
    const int64_t i = e * C + c;
    grad_in[i] = static_cast<scalar_t>(static_cast<acc_t>(grad[i]) -
                                       fast_exp(static_cast<acc_t>(y[i])) * gsum[r * C + c]);
  }
};

template <class Engine>
at::Tensor segment_log_softmax_impl(const at::Tensor& scores_in, const at::Tensor& row_ptr_in) {
  const SegmentArgs a = check_segment_args(scores_in, row_ptr_in, "scores");
  const int64_t C = a.channels;
  auto out = at::empty_like(a.src);
  if (a.num_edges == 0 || C == 0) return out;
  const Engine engine(a.row_ptr, a.num_edges);
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "segment_log_softmax", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto max = empty_acc<acc_t>(a.num_rows, C, a.src);
    auto sum = empty_acc<acc_t>(a.num_rows, C, a.src);
    const scalar_t* x = a.src.const_data_ptr<scalar_t>();
    engine.template reduce<LogSumExpOp<acc_t>>(C, DenseLoad<scalar_t, acc_t>{x, C},
                                               LogSumExpStore<acc_t>{max.data_ptr<acc_t>(), sum.data_ptr<acc_t>(), C});
    engine.map(C, LogSoftmaxMap<scalar_t, acc_t>{x, max.const_data_ptr<acc_t>(), sum.const_data_ptr<acc_t>(),
                                                 out.data_ptr<scalar_t>(), C});
  });
  return out;
}

template <class Engine>
at::Tensor segment_log_softmax_backward_impl(const at::Tensor& grad_in, const at::Tensor& out_in,
                                             const at::Tensor& row_ptr_in) {
  const SegmentArgs a = check_segment_args(out_in, row_ptr_in, "out");
  check_float_dtype(grad_in, "grad_out");
  check_same_dtype(grad_in, "grad_out", a.src, "out");
  check_same_device(grad_in, "grad_out", a.src, "out");
  TORCH_CHECK_VALUE(grad_in.sizes() == a.src.sizes(), "grad_out must have the shape of out ", a.src.sizes(),
                    ", got ", grad_in.sizes());
  const auto grad = grad_in.contiguous();
  const int64_t C = a.channels;
  auto grad_scores = at::empty_like(a.src);
  if (a.num_edges == 0 || C == 0) return grad_scores;
  const Engine engine(a.row_ptr, a.num_edges);
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "segment_log_softmax_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto gsum = empty_acc<acc_t>(a.num_rows, C, a.src);
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    engine.template reduce<SumOp<acc_t>>(C, DenseLoad<scalar_t, acc_t>{g, C},
                                         AccStore<acc_t>{gsum.data_ptr<acc_t>(), C});
    engine.map(C, LogSoftmaxBackwardMap<scalar_t, acc_t>{g, a.src.const_data_ptr<scalar_t>(),
                                                         gsum.const_data_ptr<acc_t>(),
                                                         grad_scores.data_ptr<scalar_t>(), C});
  });
  return grad_scores;
}

}  // namespace pyengine::segment
