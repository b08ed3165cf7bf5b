// Argument checks of the NUFFT ops (shared by CPU and CUDA), and the kernel
// Fourier transform op (device-independent, computed on the host).
#include <torch/library.h>

#include <string>

#include "common/checks.h"
#include "nufft/es_kernel.h"
#include "nufft/nufft.h"

namespace pyengine::nufft {

void check_points(const at::Tensor& points, const char* name) {
  check_dim(points, 2, name);
  const auto s = points.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble, name, " must be float32 or float64, got ", s);
  TORCH_CHECK_VALUE(points.size(1) >= 1 && points.size(1) <= kMaxDim, name,
                    " must have 1, 2 or 3 columns (the dimension d), got shape ", points.sizes());
}

void check_grid_and_bins(c10::IntArrayRef grid, c10::IntArrayRef bins, int64_t dim) {
  TORCH_CHECK_VALUE(int64_t(grid.size()) == dim, "grid must have one size per point dimension (", dim, "), got ",
                    grid);
  TORCH_CHECK_VALUE(int64_t(bins.size()) == dim, "bins must have one size per point dimension (", dim, "), got ",
                    bins);
  for (int64_t i = 0; i < dim; ++i) {
    TORCH_CHECK_VALUE(bins[i] >= 1, "bins must be positive, got ", bins);
  }
}

void check_kernel_params(int64_t width, double beta) {
  TORCH_CHECK_VALUE(width >= 2 && width <= kMaxWidth, "width must be in [2, ", kMaxWidth, "], got ", width);
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta > 0, "beta must be positive, got ", beta);
}

static void check_grid_sizes(c10::IntArrayRef grid, int64_t width) {
  for (const int64_t n : grid) {
    TORCH_CHECK_VALUE(n >= 2 * width, "fine grid sizes must be at least 2 * width (", 2 * width, "), got ", grid);
  }
}

static at::ScalarType complex_of(at::ScalarType real) {
  return real == at::kDouble ? at::kComplexDouble : at::kComplexFloat;
}

static void check_sort_tensors(const at::Tensor& perm, const at::Tensor& bin_ptr, const at::Tensor& points,
                               int64_t total_bins) {
  check_dim(perm, 1, "perm");
  check_dim(bin_ptr, 1, "bin_ptr");
  check_index_dtype(perm, "perm", false);
  check_index_dtype(bin_ptr, "bin_ptr", false);
  check_same_device(perm, "perm", points, "points");
  check_same_device(bin_ptr, "bin_ptr", points, "points");
  TORCH_CHECK_VALUE(perm.size(0) == points.size(0), "perm must have one entry per point (", points.size(0),
                    "), got ", perm.size(0), "; was the plan made for other points?");
  TORCH_CHECK_VALUE(bin_ptr.size(0) == total_bins + 1, "bin_ptr must have ", total_bins + 1,
                    " entries for this grid and bin size, got ", bin_ptr.size(0),
                    "; was the plan made for another grid?");
  if (data_checks_for(perm)) check_sort_data(perm, bin_ptr, points.size(0));
}

void check_sort_data(const at::Tensor& perm, const at::Tensor& bin_ptr, int64_t M) {
  // perm is a permutation only if sort produced it; we check what keeps the
  // kernels in bounds: every index in range and bin_ptr ending at M.
  const auto last = bin_ptr.numel() > 0 ? bin_ptr[-1].item<int64_t>() : -1;
  TORCH_CHECK_VALUE(last == M, "bin_ptr[-1] must equal the number of points (", M, "), got ", last);
  const auto first = bin_ptr[0].item<int64_t>();
  TORCH_CHECK_VALUE(first == 0, "bin_ptr[0] must be 0, got ", first);
  if (M > 0) {
    auto mm = at::aminmax(perm);
    const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
    TORCH_CHECK_VALUE(lo >= 0 && hi < M, "perm entries must be in [0, ", M, "), got range [", lo, ", ", hi, "]");
  }
}

static void fill_geometry(SpreadArgs& a, c10::IntArrayRef grid, c10::IntArrayRef bins) {
  for (int i = 0; i < kMaxDim; ++i) {
    a.grid[i] = i < a.dim ? grid[i] : 1;
    a.bins[i] = i < a.dim ? bins[i] : 1;
    a.nbins[i] = bin_count(a.grid[i], a.bins[i]);
  }
}

static int64_t total_bins(const SpreadArgs& a) { return a.nbins[0] * a.nbins[1] * a.nbins[2]; }

SpreadArgs check_spread_args(const at::Tensor& points, const at::Tensor& values, const at::Tensor& perm,
                             const at::Tensor& bin_ptr, c10::IntArrayRef grid, c10::IntArrayRef bins,
                             int64_t width, double beta) {
  check_points(points, "points");
  const int64_t dim = points.size(1);
  check_grid_and_bins(grid, bins, dim);
  check_kernel_params(width, beta);
  check_grid_sizes(grid, width);
  check_dim(values, 2, "values");
  check_same_device(values, "values", points, "points");
  TORCH_CHECK_TYPE(values.scalar_type() == complex_of(points.scalar_type()), "values must be ",
                   complex_of(points.scalar_type()), " for ", points.scalar_type(), " points, got ",
                   values.scalar_type());
  TORCH_CHECK_VALUE(values.size(1) == points.size(0), "values must be (B, M) with M = ", points.size(0),
                    " points, got shape ", values.sizes());
  SpreadArgs a;
  a.dim = int(dim);
  a.M = points.size(0);
  a.B = values.size(0);
  a.width = int(width);
  a.beta = beta;
  fill_geometry(a, grid, bins);
  check_sort_tensors(perm, bin_ptr, points, total_bins(a));
  a.points = points.contiguous();
  a.data = values.contiguous();
  a.perm = perm.contiguous();
  a.bin_ptr = bin_ptr.contiguous();
  return a;
}

SpreadArgs check_interp_args(const at::Tensor& points, const at::Tensor& fine, const at::Tensor& perm,
                             const at::Tensor& bin_ptr, c10::IntArrayRef bins, int64_t width, double beta) {
  check_points(points, "points");
  const int64_t dim = points.size(1);
  TORCH_CHECK_VALUE(fine.dim() == dim + 1, "fine must be (B, *grid) with ", dim, " grid dimensions, got shape ",
                    fine.sizes());
  check_same_device(fine, "fine", points, "points");
  TORCH_CHECK_TYPE(fine.scalar_type() == complex_of(points.scalar_type()), "fine must be ",
                   complex_of(points.scalar_type()), " for ", points.scalar_type(), " points, got ",
                   fine.scalar_type());
  const auto grid = fine.sizes().slice(1);
  check_grid_and_bins(grid, bins, dim);
  check_kernel_params(width, beta);
  check_grid_sizes(grid, width);
  SpreadArgs a;
  a.dim = int(dim);
  a.M = points.size(0);
  a.B = fine.size(0);
  a.width = int(width);
  a.beta = beta;
  fill_geometry(a, grid, bins);
  check_sort_tensors(perm, bin_ptr, points, total_bins(a));
  a.points = points.contiguous();
  a.data = fine.contiguous();
  a.perm = perm.contiguous();
  a.bin_ptr = bin_ptr.contiguous();
  return a;
}

at::Tensor nufft_kernel_ft(int64_t n_modes, int64_t nf, int64_t width, double beta) {
  check_kernel_params(width, beta);
  TORCH_CHECK_VALUE(n_modes >= 1, "n_modes must be positive, got ", n_modes);
  TORCH_CHECK_VALUE(nf >= n_modes, "nf (fine grid size) must be at least n_modes, got nf=", nf,
                    " n_modes=", n_modes);
  std::vector<int64_t> k(n_modes);
  for (int64_t j = 0; j < n_modes; ++j) k[j] = j - n_modes / 2;  // -N//2 .. (N-1)//2
  auto out = at::empty({n_modes}, at::TensorOptions().dtype(at::kDouble));
  kernel_fourier(int(width), beta, nf, k.data(), n_modes, out.data_ptr<double>());
  return out;
}

// No tensor inputs, so it cannot dispatch on a device key.
TORCH_LIBRARY_IMPL(pyengine, CompositeExplicitAutograd, m) { m.impl("nufft_kernel_ft", &nufft_kernel_ft); }

}  // namespace pyengine::nufft
