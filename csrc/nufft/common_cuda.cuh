#pragma once
// Pieces shared by the CUDA spreader, interpolator and sort: the grid geometry
// passed by value to kernels (dimensions padded to 3 with leading size-1 ones),
// the per-point kernel evaluation, and the host-side Horner table upload.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/cuda_launch.cuh"
#include "nufft/es_kernel.h"
#include "nufft/nufft.h"

namespace pyengine::nufft::cuda {

using ::pyengine::cuda::dynamic_smem;
using ::pyengine::cuda::launch;

constexpr int kThreads = 256;

inline int padded_width(int w) { return (w + 3) / 4 * 4; }

struct Geo {
  int64_t n[3];      // fine grid (leading unused dimensions have size 1)
  int64_t bs[3];     // bin / tile size
  int64_t nb[3];     // bins per dimension
  double scale[3];   // n / (2 pi)
  int w, nc;
  double half_w;
};

inline Geo make_geo(const SpreadArgs& a) {
  Geo g;
  const int off = 3 - a.dim;
  for (int i = 0; i < 3; ++i) g.n[i] = 1, g.bs[i] = 1, g.nb[i] = 1, g.scale[i] = 1.0;
  for (int i = 0; i < a.dim; ++i) {
    g.n[off + i] = a.grid[i];
    g.bs[off + i] = a.bins[i];
    g.nb[off + i] = a.nbins[i];
    g.scale[off + i] = double(a.grid[i]) / (2.0 * 3.14159265358979323846);
  }
  g.w = a.width;
  g.nc = horner_ncoeffs(a.width);
  g.half_w = 0.5 * a.width;
  return g;
}

// Horner table (nc * W, highest degree first) as a device tensor of the compute type.
inline at::Tensor horner_tensor(const SpreadArgs& a, int W, at::ScalarType real, const at::Device& device) {
  const auto table = horner_table(a.width, a.beta, W);
  auto t = at::empty({int64_t(table.size())}, at::TensorOptions().dtype(at::kDouble));
  std::copy(table.begin(), table.end(), t.data_ptr<double>());
  return t.to(device, real);
}

// Kernel values ker[0..W) along grid slot s (0..2) for coordinate x; returns the first node.
// Fold and offset in double, as on the CPU (float loses the offset on large grids).
template <typename T, int W>
__device__ __forceinline__ int64_t point_kernel(double x, int s, const Geo& g, const T* coeffs, T* ker) {
  const double u = fold_to_grid<double>(x, g.scale[s], double(g.n[s]));
  const double i0 = ceil(u - g.half_w);
  eval_kernel_horner<T, W>(T(i0 - u), T(g.half_w), coeffs, g.nc, ker);
  return int64_t(i0);
}

__device__ __forceinline__ int64_t wrap_index(int64_t i, int64_t n) {
  i %= n;
  return i < 0 ? i + n : i;
}

}  // namespace pyengine::nufft::cuda
