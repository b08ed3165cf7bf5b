#pragma once
// Device-independent bodies of the segment ops. Each is a template over a CSR
// engine (cpu::CsrEngine or cuda::CsrEngine) with the same reduce/map interface,
// so segment_cpu.cpp and segment_cuda.cu only instantiate and register them.
#include <ATen/ATen.h>

#include "common/checks.h"
#include "common/dispatch.h"
#include "common/huge_pages.h"
#include "common/reducers.h"
#include "segment/functors.h"
#include "segment/segment.h"

namespace pyengine::segment {

template <typename acc_t>
at::Tensor empty_acc(int64_t rows, int64_t cols, const at::Tensor& like) {
  return at::empty({rows, cols}, like.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
}

// The reduction of one dtype: values load as acc_t, sums accumulate in sum_t.
template <typename scalar_t, typename acc_t, typename sum_t, class Engine>
void segment_reduce_typed(const Engine& engine, const SegmentArgs& a, Reduce reduce, at::Tensor& out, at::Tensor& arg,
                          bool track_arg) {
  const int64_t C = a.channels;
  scalar_t* o = out.data_ptr<scalar_t>();
  // Without need_arg the winners are still found (it is free in the fold) but not written.
  const ExtremumStore<scalar_t> extremum_store{o, track_arg ? arg.data_ptr<int64_t>() : nullptr, C};
  const DenseLoad<scalar_t, acc_t> load{a.src.const_data_ptr<scalar_t>(), C};
  switch (reduce) {
    case Reduce::Sum:
    case Reduce::Mean:
      engine.template reduce<SumOp<sum_t>>(C, DenseLoad<scalar_t, sum_t>{a.src.const_data_ptr<scalar_t>(), C},
                                           SumStore<scalar_t, sum_t>{o, C, reduce == Reduce::Mean});
      break;
    case Reduce::Max:
      engine.template reduce<ExtremumOp<acc_t, true>>(C, load, extremum_store);
      break;
    case Reduce::Min:
      engine.template reduce<ExtremumOp<acc_t, false>>(C, load, extremum_store);
      break;
  }
}

// Floating src accumulates in at::opmath_type; integer src (int32 / int64; sum, min, max)
// sums in uint64, i.e. modulo 2^64, and is stored in its own dtype: the result is the exact
// sum wrapped to the dtype's two's complement range (as torch.sum of int64 and scatter_add of
// int32 wrap), whatever the order of the additions.
template <class Engine>
std::tuple<at::Tensor, at::Tensor> segment_reduce_impl(const at::Tensor& src_in, const at::Tensor& row_ptr_in,
                                                       c10::string_view reduce_name, bool need_arg) {
  const Reduce reduce = parse_reduce(reduce_name);
  const bool integral = src_in.scalar_type() == at::kInt || src_in.scalar_type() == at::kLong;
  TORCH_CHECK_TYPE(!(integral && reduce == Reduce::Mean), "reduce='mean' needs a floating-point src, got ",
                   src_in.scalar_type(), " (sum, min and max take int32 / int64)");
  const SegmentArgs a = check_segment_args(src_in, row_ptr_in, "src", /*allow_int=*/true);
  const int64_t C = a.channels;
  const bool track_arg = need_arg && is_extremum(reduce);
  auto out = at::empty({a.num_rows, C}, a.src.options());
  auto arg = track_arg ? at::empty({a.num_rows, C}, a.src.options().dtype(at::kLong))
                       : at::empty({0}, a.src.options().dtype(at::kLong));
  advise_huge_pages(out);  // (CPU only) large outputs: huge pages before their first write
  advise_huge_pages(arg);
  const Engine engine(a.row_ptr, a.num_edges);
  if (integral) {
    AT_DISPATCH_INDEX_TYPES(a.src.scalar_type(), "segment_reduce", [&] {
      segment_reduce_typed<index_t, index_t, uint64_t>(engine, a, reduce, out, arg, track_arg);
    });
  } else {
    PYE_DISPATCH_FLOATING(a.src.scalar_type(), "segment_reduce", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      segment_reduce_typed<scalar_t, acc_t, acc_t>(engine, a, reduce, out, arg, track_arg);
    });
  }
  return {out, arg};
}

template <class Engine>
at::Tensor segment_reduce_backward_impl(const at::Tensor& grad_in, const at::Tensor& row_ptr_in,
                                        const at::Tensor& arg_in, c10::string_view reduce_name, int64_t num_edges) {
  const Reduce reduce = parse_reduce(reduce_name);
  check_row_ptr(row_ptr_in, num_edges, "row_ptr", "num_edges");
  const auto row_ptr = row_ptr_in.contiguous();
  const auto grad = check_row_values(grad_in, row_ptr, "grad_out");
  const int64_t C = grad.size(1);
  at::Tensor arg;
  if (is_extremum(reduce)) {
    check_index_dtype(arg_in, "arg", /*allow_int32=*/false);
    check_same_device(arg_in, "arg", grad, "grad_out");
    TORCH_CHECK_VALUE(arg_in.sizes() == grad.sizes(), "arg must have the shape of grad_out ", grad.sizes(), ", got ",
                      arg_in.sizes());
    arg = arg_in.contiguous();  // only compared with edge ids, never used as an address
  }
  auto grad_src = at::empty({num_edges, C}, grad.options());
  const Engine engine(row_ptr, num_edges);
  PYE_DISPATCH_FLOATING(grad.scalar_type(), "segment_reduce_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    engine.map(C, ReduceBackwardMap<scalar_t, acc_t>{grad.const_data_ptr<scalar_t>(),
                                                     arg.defined() ? arg.const_data_ptr<int64_t>() : nullptr,
                                                     reduce == Reduce::Mean, grad_src.data_ptr<scalar_t>(), C});
  });
  return grad_src;
}

// Softmax (log = false) or log-softmax (log = true) of the edges of every row.
template <class Engine>
at::Tensor segment_softmax_impl(const at::Tensor& scores_in, const at::Tensor& row_ptr_in, bool log) {
  const SegmentArgs a = check_segment_args(scores_in, row_ptr_in, "scores");
  const int64_t C = a.channels;
  auto out = at::empty_like(a.src);
  if (a.num_edges == 0 || C == 0) return out;
  const Engine engine(a.row_ptr, a.num_edges);
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "segment_softmax", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto max = empty_acc<acc_t>(a.num_rows, C, a.src);
    auto sum = empty_acc<acc_t>(a.num_rows, C, a.src);
    const scalar_t* x = a.src.const_data_ptr<scalar_t>();
    engine.template reduce<LogSumExpOp<acc_t>>(C, DenseLoad<scalar_t, acc_t>{x, C},
                                               LogSumExpStore<acc_t>{max.data_ptr<acc_t>(), sum.data_ptr<acc_t>(), C});
    engine.map(C, SoftmaxMap<scalar_t, acc_t>{x, max.const_data_ptr<acc_t>(), sum.const_data_ptr<acc_t>(),
                                              out.data_ptr<scalar_t>(), C, log});
  });
  return out;
}

// Backward of segment_softmax_impl, given its output out.
template <class Engine>
at::Tensor segment_softmax_backward_impl(const at::Tensor& grad_in, const at::Tensor& out_in,
                                         const at::Tensor& row_ptr_in, bool log) {
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
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "segment_softmax_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto dot = empty_acc<acc_t>(a.num_rows, C, a.src);
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const scalar_t* y = a.src.const_data_ptr<scalar_t>();
    engine.template reduce<SumOp<acc_t>>(C, SoftmaxGradLoad<scalar_t, acc_t>{g, y, C, log},
                                         AccStore<acc_t>{dot.data_ptr<acc_t>(), C});
    engine.map(C, SoftmaxBackwardMap<scalar_t, acc_t>{g, y, dot.const_data_ptr<acc_t>(),
                                                      grad_scores.data_ptr<scalar_t>(), C, log});
  });
  return grad_scores;
}

template <class Engine>
at::Tensor spmm_impl(const at::Tensor& row_ptr, const at::Tensor& col, const std::optional<at::Tensor>& values,
                     const at::Tensor& x) {
  const SpmmArgs a = check_spmm_args(row_ptr, col, values, x);
  const int64_t C = a.channels;
  auto out = at::empty({a.num_rows, C}, a.x.options());
  const Engine engine(a.row_ptr, a.num_edges);
  PYE_DISPATCH_FLOATING(a.x.scalar_type(), "spmm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "spmm", [&] {
      const GatherLoad<scalar_t, acc_t, index_t> load{
          a.values.defined() ? a.values.const_data_ptr<scalar_t>() : nullptr, a.col.const_data_ptr<index_t>(),
          a.x.const_data_ptr<scalar_t>(), C};
      engine.template reduce<SumOp<acc_t>>(C, load, SumStore<scalar_t, acc_t>{out.data_ptr<scalar_t>(), C, false});
    });
  });
  return out;
}

template <class Engine>
at::Tensor csr_sddmm_impl(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& a_in,
                          const at::Tensor& b_in) {
  const SpmmArgs s = check_spmm_args(row_ptr, col, std::nullopt, b_in, "b");
  const auto a = check_row_values(a_in, s.row_ptr, "a");
  check_same_dtype(a, "a", s.x, "b");
  TORCH_CHECK_VALUE(a.size(1) == s.channels, "a and b must have the same number of channels, got ", a.size(1),
                    " and ", s.channels);
  auto out = at::empty({s.num_edges}, s.x.options());
  const Engine engine(s.row_ptr, s.num_edges);
  PYE_DISPATCH_FLOATING(s.x.scalar_type(), "csr_sddmm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(s.col.scalar_type(), "csr_sddmm", [&] {
      engine.map(1, EdgeDotMap<scalar_t, acc_t, index_t>{a.const_data_ptr<scalar_t>(), s.x.const_data_ptr<scalar_t>(),
                                                         s.col.const_data_ptr<index_t>(), out.data_ptr<scalar_t>(),
                                                         s.channels});
    });
  });
  return out;
}

// Arguments of csr_transpose, validated (row_ptr int64, col in [0, num_cols)).
inline void check_transpose_args(const at::Tensor& row_ptr, const at::Tensor& col, int64_t num_cols) {
  TORCH_CHECK_VALUE(num_cols >= 0, "num_cols must be >= 0, got ", num_cols);
  check_same_device(row_ptr, "row_ptr", col, "col");
  check_dim(col, 1, "col");
  check_row_ptr(row_ptr, col.size(0), "row_ptr", "the length of col");
  check_col(col, col.size(0), num_cols, "col", "num_cols");
}

// Defines the entry points declared in segment.h for one device (DEV = cpu or
// cuda) from the templates above, instantiated with that device's ENGINE.
#define PYE_SEGMENT_DEFINE(DEV, ENGINE)                                                                              \
  std::tuple<at::Tensor, at::Tensor> segment_reduce_##DEV(const at::Tensor& src, const at::Tensor& row_ptr,          \
                                                          c10::string_view reduce, bool need_arg) {                  \
    return segment_reduce_impl<ENGINE>(src, row_ptr, reduce, need_arg);                                              \
  }                                                                                                                  \
  at::Tensor segment_reduce_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& row_ptr,                    \
                                           const at::Tensor& arg, c10::string_view reduce, int64_t num_edges) {      \
    return segment_reduce_backward_impl<ENGINE>(grad_out, row_ptr, arg, reduce, num_edges);                          \
  }                                                                                                                  \
  at::Tensor segment_softmax_##DEV(const at::Tensor& scores, const at::Tensor& row_ptr) {                             \
    return segment_softmax_impl<ENGINE>(scores, row_ptr, false);                                                     \
  }                                                                                                                  \
  at::Tensor segment_softmax_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& out,                       \
                                            const at::Tensor& row_ptr) {                                             \
    return segment_softmax_backward_impl<ENGINE>(grad_out, out, row_ptr, false);                                     \
  }                                                                                                                  \
  at::Tensor segment_log_softmax_##DEV(const at::Tensor& scores, const at::Tensor& row_ptr) {                         \
    return segment_softmax_impl<ENGINE>(scores, row_ptr, true);                                                      \
  }                                                                                                                  \
  at::Tensor segment_log_softmax_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& out,                   \
                                                const at::Tensor& row_ptr) {                                         \
    return segment_softmax_backward_impl<ENGINE>(grad_out, out, row_ptr, true);                                      \
  }                                                                                                                  \
  at::Tensor spmm_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, const std::optional<at::Tensor>& values,   \
                        const at::Tensor& x) {                                                                       \
    return spmm_impl<ENGINE>(row_ptr, col, values, x);                                                               \
  }                                                                                                                  \
  at::Tensor csr_sddmm_##DEV(const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& a,                  \
                             const at::Tensor& b) {                                                                  \
    return csr_sddmm_impl<ENGINE>(row_ptr, col, a, b);                                                               \
  }

}  // namespace pyengine::segment
