// Device-independent argument checks of the neighbor ops (shapes, dtypes,
// devices), and the tree structure walk both devices' queries share. Messages
// name the argument, as everywhere in pyengine.
#include <cstdint>
#include <vector>

#include "common/checks.h"
#include "neighbors/neighbors.h"

namespace pyengine::neighbors {

int64_t check_points(const at::Tensor& points, const char* name) {
  check_dim(points, 2, name);
  const auto s = points.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble, name, " must be float32 or float64, got ", s);
  const int64_t d = points.size(1);
  TORCH_CHECK_VALUE(d == 2 || d == 3, name, " must have 2 or 3 coordinates per row, got shape ", points.sizes());
  return d;
}

TreeArgs check_tree_args(const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes,
                         const at::Tensor& bounds, const at::Tensor& roots, const at::Tensor& queries,
                         const at::Tensor& query_ptr) {
  const int64_t d = check_points(points, "points");
  const int64_t n = points.size(0);
  check_dim(queries, 2, "queries");
  check_same_dtype(queries, "queries", points, "points");
  check_same_device(queries, "queries", points, "points");
  TORCH_CHECK_VALUE(queries.size(1) == d, "queries must have ", d, " coordinates per row like points, got shape ",
                    queries.sizes());

  // The tree tensors, as kdtree_build returns them.
  check_dim(perm, 1, "perm");
  check_index_dtype(perm, "perm", /*allow_int32=*/false);
  check_same_device(perm, "perm", points, "points");
  TORCH_CHECK_VALUE(perm.size(0) == n, "perm must have one entry per point (", n, "), got ", perm.size(0));
  check_dim(nodes, 2, "nodes");
  check_index_dtype(nodes, "nodes", /*allow_int32=*/false);
  check_same_device(nodes, "nodes", points, "points");
  TORCH_CHECK_VALUE(nodes.size(1) == 4, "nodes must have shape (K, 4) (begin, end, left, right), got ",
                    nodes.sizes());
  const int64_t num_nodes = nodes.size(0);
  check_dim(bounds, 3, "bounds");
  check_same_dtype(bounds, "bounds", points, "points");
  check_same_device(bounds, "bounds", points, "points");
  TORCH_CHECK_VALUE(bounds.size(0) == num_nodes && bounds.size(1) == 2 && bounds.size(2) == d,
                    "bounds must have shape (K, 2, d) = (", num_nodes, ", 2, ", d, "), got ", bounds.sizes());
  check_dim(roots, 1, "roots");
  check_index_dtype(roots, "roots", /*allow_int32=*/false);
  check_same_device(roots, "roots", points, "points");

  // Queries are grouped by batch like the points; one root per batch.
  const int64_t num_batches = roots.size(0);
  check_same_device(query_ptr, "query_ptr", points, "points");
  check_row_ptr(query_ptr, queries.size(0), "query_ptr", "the number of queries");
  TORCH_CHECK_VALUE(query_ptr.size(0) == num_batches + 1, "query_ptr must have length B + 1 = ", num_batches + 1,
                    " (roots has B = ", num_batches, " batches), got ", query_ptr.size(0));
  return {points.contiguous(), perm.contiguous(),    nodes.contiguous(), bounds.contiguous(),
          roots.contiguous(),  queries.contiguous(), query_ptr.contiguous(),
          n,                   num_nodes,            num_batches,        queries.size(0),
          d};
}

void check_max_neighbors(int64_t max_neighbors) {
  TORCH_CHECK_VALUE(max_neighbors == -1 || max_neighbors >= 1,
                    "max_neighbors must be -1 (unlimited) or >= 1, got ", max_neighbors);
}

bool tree_structure_ok(const int64_t* nodes, int64_t K, const int64_t* roots, int64_t B) {
  std::vector<uint8_t> seen(K, 0);
  std::vector<int64_t> stack;
  int64_t reached = 0;
  for (int64_t b = 0; b < B; ++b) {
    if (roots[b] < 0) continue;
    stack.assign(1, roots[b]);
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      if (seen[i]) return false;
      seen[i] = 1;
      ++reached;
      const int64_t* nd = nodes + 4 * i;
      if (nd[2] < 0) continue;
      const int64_t* l = nodes + 4 * nd[2];
      const int64_t* r = nodes + 4 * nd[3];
      if (!(nd[2] != nd[3] && l[0] == nd[0] && l[1] == r[0] && r[1] == nd[1])) return false;
      stack.push_back(nd[3]);
      stack.push_back(nd[2]);
    }
  }
  return reached == K;
}

}  // namespace pyengine::neighbors
