#pragma once
// Non-uniform FFT op family: the O(M w^d) parts of types 1 and 2.
//
//   nufft_sort    bin-sort the points on the fine grid (a plan keeps the result)
//   nufft_spread  type 1: strengths at points -> fine grid, ES kernel (B channels per pass)
//   nufft_interp  type 2: fine grid -> values at points (adjoint of spread)
//   nufft_kernel_ft  kernel Fourier transform at the mode frequencies (deconvolution)
//
// The FFT and the mode copy / deconvolution are done in Python with torch.fft
// (pyengine/ops/nufft.py). Points are (M, d) real, 2*pi-periodic; column i of
// points pairs with fine-grid dimension i (dimension d-1 is contiguous).
#include <ATen/ATen.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "common/macros.h"

namespace pyengine::nufft {

constexpr int kMaxDim = 3;

// Validated, contiguous arguments shared by spread and interp.
struct SpreadArgs {
  at::Tensor points, data, perm, bin_ptr;  // data: values (B, M) or fine grid (B, *grid)
  int dim;
  int64_t M, B;
  int64_t grid[kMaxDim];   // fine grid size per dimension
  int64_t bins[kMaxDim];   // bin size (fine-grid nodes) per dimension
  int64_t nbins[kMaxDim];  // number of bins per dimension
  int width;
  double beta;
};

// Number of bins along one dimension of n nodes with bins of size b.
inline int64_t bin_count(int64_t n, int64_t b) { return (n + b - 1) / b; }

void check_points(const at::Tensor& points, const char* name);
void check_grid_and_bins(c10::IntArrayRef grid, c10::IntArrayRef bins, int64_t dim);
void check_kernel_params(int64_t width, double beta);
SpreadArgs check_spread_args(const at::Tensor& points, const at::Tensor& values, const at::Tensor& perm,
                             const at::Tensor& bin_ptr, c10::IntArrayRef grid, c10::IntArrayRef bins,
                             int64_t width, double beta);
SpreadArgs check_interp_args(const at::Tensor& points, const at::Tensor& fine, const at::Tensor& perm,
                             const at::Tensor& bin_ptr, c10::IntArrayRef bins, int64_t width, double beta);
// Data checks (on the host; one copy from the GPU): bin_ptr ends at M, perm in range.
void check_sort_data(const at::Tensor& perm, const at::Tensor& bin_ptr, int64_t M);

// Fold a coordinate x (radians, any finite real) onto the fine grid: u in [0, n).
// x is first reduced modulo 2 pi (the double nearest to it) with fmod, which is
// exact for every finite x, so |x| up to the largest double gives a point of one
// period and the first node (and every subgrid size) derived from u stays
// bounded by n. (Scaling first and subtracting n * floor(u / n) is not a
// reduction: for |x| >~ 1e16 the product's rounding error exceeds n, u leaves
// [0, n), and the int64 node index overflowed.) For |x| >> 1 the result is
// x's phase modulo the double 2 pi, i.e. off the true phase by about
// |x| * 2.4e-16 radians; NaN / inf (rejected by the wrappers) map to 0.
template <typename T>
PYE_HD T fold_to_grid(T x, T scale /* n / (2 pi) */, T n) {
  const T two_pi = T(6.283185307179586);
  T r = fmod(x, two_pi);  // exact, in (-2 pi, 2 pi), sign of x
  if (r < T(0)) r += two_pi;
  T u = r * scale;
  if (u >= n) u -= n;          // r rounded up to 2 pi
  if (!(u >= T(0) && u < n)) u = T(0);  // NaN / inf stay in bounds
  return u;
}

at::Tensor nufft_kernel_ft(int64_t n_modes, int64_t nf, int64_t width, double beta);

#define PYE_NUFFT_DECLARE(DEV)                                                                                     \
  std::tuple<at::Tensor, at::Tensor> nufft_sort_##DEV(const at::Tensor& points, c10::IntArrayRef grid,            \
                                                      c10::IntArrayRef bins);                                     \
  at::Tensor nufft_spread_##DEV(const at::Tensor& points, const at::Tensor& values, const at::Tensor& perm,        \
                                const at::Tensor& bin_ptr, c10::IntArrayRef grid, c10::IntArrayRef bins,           \
                                int64_t width, double beta);                                                       \
  at::Tensor nufft_interp_##DEV(const at::Tensor& points, const at::Tensor& fine, const at::Tensor& perm,          \
                                const at::Tensor& bin_ptr, c10::IntArrayRef bins, int64_t width, double beta);

PYE_NUFFT_DECLARE(cpu)
PYE_NUFFT_DECLARE(cuda)
#undef PYE_NUFFT_DECLARE

}  // namespace pyengine::nufft
