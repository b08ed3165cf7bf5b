#pragma once
// Brute-force (exhaustive) k-nearest-neighbour search for points of any
// dimension d >= 1: feature-space kNN (DGCNN-style graphs, d = 16..1024) where a
// k-d tree degrades, and cosine distance. Batched clouds as in neighbors/:
// points sorted by cloud with offsets point_ptr (B+1,), queries likewise with
// query_ptr (B+1,); a query only sees the points of its own cloud.
//
// Result rows are (dist (M, k), idx (M, k)) in ascending (distance, index)
// order; a cloud with fewer than k points leaves its rows padded with
// (inf, -1). Distances are Euclidean (not squared) or, with cosine,
// 1 - <q, p> / (|q| |p|) (a zero vector has distance 1 to everything).
// Candidates whose distance is NaN (NaN coordinates) are never neighbours.
#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "common/macros.h"

namespace pyengine::bruteforce {

struct KnnArgs {
  at::Tensor points, queries, point_ptr, query_ptr;
  int64_t num_points, num_queries, dim, k, num_batches;
  bool cosine;
};
// Shapes, dtypes (float32/float64, int64 offsets), devices and (if input checks are
// enabled) the offsets' values; returned contiguous.
KnnArgs check_knn_args(const at::Tensor& points, const at::Tensor& queries, const at::Tensor& point_ptr,
                       const at::Tensor& query_ptr, int64_t k, bool cosine);

// Does candidate (d, j) belong before the row's current last entry (dl, jl)?
// Empty slots (jl < 0) lose to every real candidate; ties go to the lower index.
template <typename acc_t>
PYE_HD bool beats_last(acc_t d, int64_t j, acc_t dl, int64_t jl) {
  if (d != d) return false;  // NaN
  return jl < 0 || d < dl || (d == dl && j < jl);
}

// Inserts (d, j) into a row of k entries sorted by (distance, index), dropping the
// last one. Call only when beats_last holds.
template <typename acc_t>
PYE_HD void topk_insert(acc_t* dist, int64_t* idx, int64_t k, acc_t d, int64_t j) {
  int64_t p = k - 1;
  while (p > 0 && (idx[p - 1] < 0 || dist[p - 1] > d || (dist[p - 1] == d && idx[p - 1] > j))) {
    dist[p] = dist[p - 1];
    idx[p] = idx[p - 1];
    --p;
  }
  dist[p] = d;
  idx[p] = j;
}

std::tuple<at::Tensor, at::Tensor> knn_bruteforce_cpu(const at::Tensor& points, const at::Tensor& queries,
                                                      const at::Tensor& point_ptr, const at::Tensor& query_ptr,
                                                      int64_t k, bool cosine);
std::tuple<at::Tensor, at::Tensor> knn_bruteforce_cuda(const at::Tensor& points, const at::Tensor& queries,
                                                       const at::Tensor& point_ptr, const at::Tensor& query_ptr,
                                                       int64_t k, bool cosine);

}  // namespace pyengine::bruteforce
