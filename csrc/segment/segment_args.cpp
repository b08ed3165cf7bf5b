#include <string>

#include "common/checks.h"
#include "segment/segment.h"

namespace pyengine::segment {

Reduce parse_reduce(c10::string_view reduce) {
  if (reduce == "sum") return Reduce::Sum;
  if (reduce == "mean") return Reduce::Mean;
  if (reduce == "max") return Reduce::Max;
  if (reduce == "min") return Reduce::Min;
  TORCH_CHECK_VALUE(false, "reduce must be one of 'sum', 'mean', 'max', 'min', got '", std::string(reduce), "'");
}

SegmentArgs check_segment_args(const at::Tensor& src, const at::Tensor& row_ptr, const char* src_name,
                               bool allow_int) {
  check_dim(src, 2, src_name);
  const auto t = src.scalar_type();
  if (!(allow_int && (t == at::kInt || t == at::kLong))) {
    if (allow_int) {
      const bool ok = t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
      TORCH_CHECK_TYPE(ok, src_name, " must be float32, float64, float16, bfloat16, int32 or int64, got ", t);
    } else {
      check_float_dtype(src, src_name);
    }
  }
  check_same_device(src, src_name, row_ptr, "row_ptr");
  const std::string edges = std::string("the number of rows of ") + src_name;
  check_row_ptr(row_ptr, src.size(0), "row_ptr", edges.c_str());
  return {src.contiguous(), row_ptr.contiguous(), row_ptr.numel() - 1, src.size(0), src.size(1)};
}

SpmmArgs check_spmm_args(const at::Tensor& row_ptr, const at::Tensor& col, const std::optional<at::Tensor>& values,
                         const at::Tensor& x, const char* x_name) {
  check_dim(x, 2, x_name);
  check_float_dtype(x, x_name);
  check_same_device(row_ptr, "row_ptr", x, x_name);
  check_same_device(col, "col", x, x_name);
  check_dim(col, 1, "col");
  const int64_t num_edges = col.size(0);
  check_row_ptr(row_ptr, num_edges, "row_ptr", "the length of col");
  const std::string x_rows = std::string("the number of rows of ") + x_name;
  check_col(col, num_edges, x.size(0), "col", x_rows.c_str());
  at::Tensor v;
  if (values.has_value() && values->defined()) {
    v = *values;
    check_dim(v, 1, "values");
    check_same_device(v, "values", x, x_name);
    check_same_dtype(v, "values", x, x_name);
    TORCH_CHECK_VALUE(v.size(0) == num_edges, "values must have one entry per edge (", num_edges, "), got ",
                      v.size(0));
    v = v.contiguous();
  }
  return {row_ptr.contiguous(), col.contiguous(), v, x.contiguous(), row_ptr.numel() - 1, num_edges, x.size(0),
          x.size(1)};
}

at::Tensor check_row_values(const at::Tensor& values, const at::Tensor& row_ptr, const char* name) {
  check_dim(values, 2, name);
  check_float_dtype(values, name);
  check_same_device(values, name, row_ptr, "row_ptr");
  TORCH_CHECK_VALUE(values.size(0) == row_ptr.numel() - 1, name, " must have one row per CSR row (",
                    row_ptr.numel() - 1, "), got ", values.size(0));
  return values.contiguous();
}

}  // namespace pyengine::segment

#include "segment/index_softmax.h"

namespace pyengine::segment {

IndexArgs check_index_args(const at::Tensor& src, const at::Tensor& index, int64_t num_nodes, const char* src_name) {
  check_dim(src, 2, src_name);
  check_float_dtype(src, src_name);
  check_same_device(index, "index", src, src_name);
  TORCH_CHECK_VALUE(num_nodes >= 0, "num_nodes must be >= 0, got ", num_nodes);
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong, "index must be int64, got ", index.scalar_type());
  check_col(index, src.size(0), num_nodes, "index", "num_nodes");
  return {src.contiguous(), index.contiguous(), src.size(0), src.size(1), num_nodes};
}

IndexArgs check_index_backward_args(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& index,
                                    int64_t num_nodes, at::Tensor& grad) {
  IndexArgs a = check_index_args(out, index, num_nodes, "out");
  check_float_dtype(grad_out, "grad_out");
  check_same_dtype(grad_out, "grad_out", a.src, "out");
  check_same_device(grad_out, "grad_out", a.src, "out");
  TORCH_CHECK_VALUE(grad_out.sizes() == a.src.sizes(), "grad_out must have the shape of out ", a.src.sizes(),
                    ", got ", grad_out.sizes());
  grad = grad_out.contiguous();
  return a;
}

}  // namespace pyengine::segment
