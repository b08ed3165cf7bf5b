#pragma once
// Neighbor search op family: a k-d tree over points (N, d), d in {2, 3}, built
// once and queried for fixed-radius and k-nearest neighbors. The tree is four
// plain tensors (see registration.cpp), so it can be saved, moved and traced
// like any other tensor; this header declares the checks every device shares
// and the entry points that registration binds.
#include <ATen/ATen.h>

#include <tuple>
#include <vector>

namespace pyengine::neighbors {

// points (N, d): float32 or float64, d in {2, 3}. Returns d. The CPU search
// compares squared distances in a wider type (kdtree_search_cpu.h: double for
// float32, long double for float64 beyond 1e150), so they never overflow; the
// CUDA search compares the same double keys, and scaled distances where the
// CPU uses long double (kdtree_walk_cuda.cuh).
int64_t check_points(const at::Tensor& points, const char* name);

// Shapes, dtypes and devices of a tree and a query batch, checked before any
// kernel reads them; returned contiguous. Data-dependent checks (node ranges,
// child ids, perm values, finite queries) are the kernels' business because
// they read the data anyway.
struct TreeArgs {
  at::Tensor points, perm, nodes, bounds, roots, queries, query_ptr;
  int64_t num_points, num_nodes, num_batches, num_queries, dim;
};
TreeArgs check_tree_args(const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes,
                         const at::Tensor& bounds, const at::Tensor& roots, const at::Tensor& queries,
                         const at::Tensor& query_ptr);

// max_neighbors: -1 (unlimited) or >= 1.
void check_max_neighbors(int64_t max_neighbors);

// Whether nodes (K, 4) (host memory; rows begin, end, left, right, already range-checked:
// child ids both -1 or both in [0, K)) with roots[0..B) (ids in [-1, K)) form a forest: a
// walk from the roots reaches every node exactly once (no shared child, cycle or orphan)
// and every inner node's children split its range in two adjacent parts, so each point of
// a root's range lies in exactly one leaf. O(K), serial. The CPU queries run it on every
// tree; the CUDA queries on a host copy, only for trees their device check cannot decide.
bool tree_structure_ok(const int64_t* nodes, int64_t K, const int64_t* roots, int64_t B);

#define PYE_NEIGHBORS_DECLARE(DEV)                                                                                   \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kdtree_build_##DEV(                                     \
      const at::Tensor& points, const at::Tensor& batch_ptr, int64_t leaf_size);                                     \
  std::tuple<at::Tensor, at::Tensor> kdtree_radius_##DEV(                                                            \
      const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes, const at::Tensor& bounds,           \
      const at::Tensor& roots, const at::Tensor& queries, const at::Tensor& query_ptr, const at::Tensor& radius,     \
      int64_t max_neighbors);                                                                                        \
  std::vector<at::Tensor> kdtree_radius_multi_##DEV(                                                                 \
      const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes, const at::Tensor& bounds,           \
      const at::Tensor& roots, const at::Tensor& queries, const at::Tensor& query_ptr, at::ArrayRef<double> radii,   \
      int64_t max_neighbors);                                                                                        \
  std::tuple<at::Tensor, at::Tensor> kdtree_knn_##DEV(const at::Tensor& points, const at::Tensor& perm,              \
                                                      const at::Tensor& nodes, const at::Tensor& bounds,             \
                                                      const at::Tensor& roots, const at::Tensor& queries,            \
                                                      const at::Tensor& query_ptr, int64_t k);

PYE_NEIGHBORS_DECLARE(cpu)
PYE_NEIGHBORS_DECLARE(cuda)  // defined only in CUDA builds (kdtree_cuda.cu)
#undef PYE_NEIGHBORS_DECLARE

}  // namespace pyengine::neighbors
