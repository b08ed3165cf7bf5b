// CUDA k-d tree ops: the GPU build and queries of kdtree_cuda.cuh run with
// Thrust's CUDA policy on the current stream. Thrust's temporary memory comes
// from torch's caching allocator, and the policy does not synchronize after
// each algorithm (only the steps that need a count on the host wait).
#include <ATen/cuda/ThrustAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <thrust/execution_policy.h>
#include <torch/library.h>

#include "neighbors/kdtree_cuda.cuh"

namespace pyengine::neighbors {
namespace {

struct CudaBackend {
  at::cuda::ThrustAllocator alloc;
  auto policy() { return thrust::cuda::par_nosync(alloc).on(c10::cuda::getCurrentCUDAStream().stream()); }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kdtree_build_cuda(const at::Tensor& points,
                                                                             const at::Tensor& batch_ptr,
                                                                             int64_t leaf_size) {
  const c10::cuda::CUDAGuard guard(points.device());
  CudaBackend be;
  return cuda::build(be, points, batch_ptr, leaf_size);
}

std::tuple<at::Tensor, at::Tensor> kdtree_radius_cuda(const at::Tensor& points, const at::Tensor& perm,
                                                      const at::Tensor& nodes, const at::Tensor& bounds,
                                                      const at::Tensor& roots, const at::Tensor& queries,
                                                      const at::Tensor& query_ptr, const at::Tensor& radius,
                                                      int64_t max_neighbors) {
  const c10::cuda::CUDAGuard guard(points.device());
  CudaBackend be;
  return cuda::radius(be, points, perm, nodes, bounds, roots, queries, query_ptr, radius, max_neighbors);
}

std::vector<at::Tensor> kdtree_radius_multi_cuda(const at::Tensor& points, const at::Tensor& perm,
                                                 const at::Tensor& nodes, const at::Tensor& bounds,
                                                 const at::Tensor& roots, const at::Tensor& queries,
                                                 const at::Tensor& query_ptr, at::ArrayRef<double> radii,
                                                 int64_t max_neighbors) {
  const c10::cuda::CUDAGuard guard(points.device());
  CudaBackend be;
  return cuda::radius_multi(be, points, perm, nodes, bounds, roots, queries, query_ptr, radii, max_neighbors);
}

std::tuple<at::Tensor, at::Tensor> kdtree_knn_cuda(const at::Tensor& points, const at::Tensor& perm,
                                                   const at::Tensor& nodes, const at::Tensor& bounds,
                                                   const at::Tensor& roots, const at::Tensor& queries,
                                                   const at::Tensor& query_ptr, int64_t k) {
  const c10::cuda::CUDAGuard guard(points.device());
  CudaBackend be;
  return cuda::knn(be, points, perm, nodes, bounds, roots, queries, query_ptr, k);
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("kdtree_build", &kdtree_build_cuda);
  m.impl("kdtree_radius", &kdtree_radius_cuda);
  m.impl("kdtree_radius_multi", &kdtree_radius_multi_cuda);
  m.impl("kdtree_knn", &kdtree_knn_cuda);
}

}  // namespace pyengine::neighbors
