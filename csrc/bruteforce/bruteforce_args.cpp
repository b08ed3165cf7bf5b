// Device-independent argument checks of knn_bruteforce.
#include "bruteforce/bruteforce.h"
#include "common/checks.h"

namespace pyengine::bruteforce {

KnnArgs check_knn_args(const at::Tensor& points, const at::Tensor& queries, const at::Tensor& point_ptr,
                       const at::Tensor& query_ptr, int64_t k, bool cosine) {
  check_dim(points, 2, "points");
  check_dim(queries, 2, "queries");
  const auto s = points.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble, "points must be float32 or float64, got ", s,
                   " (pyengine.pyg converts float16/bfloat16 to float32 first)");
  check_same_dtype(queries, "queries", points, "points");
  check_same_device(queries, "queries", points, "points");
  check_same_device(point_ptr, "point_ptr", points, "points");
  check_same_device(query_ptr, "query_ptr", points, "points");
  TORCH_CHECK_VALUE(points.size(1) >= 1, "points must have at least one coordinate per row, got shape ",
                    points.sizes());
  TORCH_CHECK_VALUE(queries.size(1) == points.size(1), "queries must have ", points.size(1),
                    " coordinates per row like points, got shape ", queries.sizes());
  TORCH_CHECK_VALUE(k >= 1, "k must be >= 1, got ", k);
  check_row_ptr(point_ptr, points.size(0), "point_ptr", "the number of points");
  check_row_ptr(query_ptr, queries.size(0), "query_ptr", "the number of queries");
  TORCH_CHECK_VALUE(point_ptr.numel() == query_ptr.numel(), "point_ptr and query_ptr must describe the same number ",
                    "of clouds, got lengths ", point_ptr.numel(), " and ", query_ptr.numel());
  return {points.contiguous(), queries.contiguous(), point_ptr.contiguous(), query_ptr.contiguous(),
          points.size(0),      queries.size(0),      points.size(1),         k,
          point_ptr.numel() - 1, cosine};
}

}  // namespace pyengine::bruteforce
