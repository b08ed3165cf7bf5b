#pragma once
// Point sampling op family: farthest point sampling (FPS), as PointNet++,
// GAOT-style and RIGNO-style regional nodes use it. Clouds are sorted by batch
// with offsets ptr (B+1,); sample offsets out_ptr (B+1,) say how many points
// each cloud gives (at most its size); start (B,) is each cloud's first sample,
// an index local to the cloud. Every next sample is the point whose squared
// Euclidean distance to the samples so far is largest (ties: lowest index).
#include <ATen/ATen.h>

#include <cstdint>

namespace pyengine::sampling {

struct FpsArgs {
  at::Tensor points, ptr, out_ptr, start;
  int64_t num_points, dim, num_batches;
};
// Shapes, dtypes, devices, and (if input checks are enabled) the offsets' values.
FpsArgs check_fps_args(const at::Tensor& points, const at::Tensor& ptr, const at::Tensor& out_ptr,
                       const at::Tensor& start);

at::Tensor fps_cpu(const at::Tensor& points, const at::Tensor& ptr, const at::Tensor& out_ptr,
                   const at::Tensor& start);
at::Tensor fps_cuda(const at::Tensor& points, const at::Tensor& ptr, const at::Tensor& out_ptr,
                    const at::Tensor& start);

}  // namespace pyengine::sampling
