// The GPU k-d tree of csrc/neighbors/kdtree_cuda.cuh compiled for the host:
// Thrust's sequential C++ backend runs the same algorithms and functors that
// kdtree_cuda.cu runs on the GPU (only the sort, scan and reduction primitives
// underneath differ). Built and used by scripts/emulate_cuda_neighbors.py.
#include <thrust/execution_policy.h>
#include <torch/extension.h>

#include "neighbors/kdtree_cuda.cuh"

namespace {

struct HostBackend {
  auto policy() { return thrust::cpp::par; }
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace pyengine::neighbors;
  m.def("kdtree_build", [](const at::Tensor& points, const at::Tensor& batch_ptr, int64_t leaf) {
    HostBackend be;
    return cuda::build(be, points, batch_ptr, leaf);
  });
  m.def("kdtree_radius", [](const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes,
                            const at::Tensor& bounds, const at::Tensor& roots, const at::Tensor& queries,
                            const at::Tensor& query_ptr, const at::Tensor& radius, int64_t max_neighbors) {
    HostBackend be;
    return cuda::radius(be, points, perm, nodes, bounds, roots, queries, query_ptr, radius, max_neighbors);
  });
  m.def("kdtree_radius_multi", [](const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes,
                                  const at::Tensor& bounds, const at::Tensor& roots, const at::Tensor& queries,
                                  const at::Tensor& query_ptr, std::vector<double> radii, int64_t max_neighbors) {
    HostBackend be;
    return cuda::radius_multi(be, points, perm, nodes, bounds, roots, queries, query_ptr, radii, max_neighbors);
  });
  m.def("kdtree_knn", [](const at::Tensor& points, const at::Tensor& perm, const at::Tensor& nodes,
                         const at::Tensor& bounds, const at::Tensor& roots, const at::Tensor& queries,
                         const at::Tensor& query_ptr, int64_t k) {
    HostBackend be;
    return cuda::knn(be, points, perm, nodes, bounds, roots, queries, query_ptr, k);
  });
}
