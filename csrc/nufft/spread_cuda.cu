// CUDA bin sort and output-driven type-1 spreading; CUDA registrations of the family.
//
// Spreading: one thread block per (output tile, channel). A tile is one bin of
// the sort (bins are the tiles). The block accumulates its tile in shared memory
// from the sorted points of the bins whose kernel footprints can reach it
// (shared-memory atomics only), then writes the tile once. Every fine-grid node
// belongs to exactly one tile, so there are no global atomics and no zero fill.
// All B channels go in one launch (gridDim.y = B).
#include <torch/library.h>

#include "common/checks.h"
#include "nufft/common_cuda.cuh"

namespace pyengine::nufft {
namespace {
using cuda::Geo;

template <typename T>
__global__ void bin_keys_kernel(const T* __restrict__ pts, int64_t M, int dim, Geo g, int64_t* __restrict__ keys) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= M) return;
  const int off = 3 - dim;
  int64_t k = 0;
  for (int i = 0; i < dim; ++i) {
    const int s = off + i;
    const double u = fold_to_grid<double>(double(pts[j * dim + i]), g.scale[s], double(g.n[s]));
    int64_t b = int64_t(u) / g.bs[s];
    if (b > g.nb[s] - 1) b = g.nb[s] - 1;
    k = k * g.nb[s] + b;
  }
  keys[j] = k;
}

// Neighbour bins of tile t along one slot: [t - r, t + r] wrapped, or all bins when that
// range would visit a bin twice.
struct BinRange {
  int64_t first, count, nb;
  __device__ int64_t at(int64_t i) const { return cuda::wrap_index(first + i, nb); }
};

__device__ __forceinline__ BinRange bin_range(int64_t t, int s, const Geo& g) {
  const int64_t bs = g.bs[s], nb = g.nb[s];
  // A point reaches at most w/2 + 1 nodes past its bin; one more bin when the last bin is partial.
  const int64_t r = (int64_t(g.w) / 2 + 1 + bs - 1) / bs + (g.n[s] % bs ? 1 : 0);
  if (2 * r + 1 >= nb) return {0, nb, nb};
  return {t - r, 2 * r + 1, nb};
}

template <typename T, int D, int W>
__global__ void __launch_bounds__(cuda::kThreads)
spread_tiles_kernel(const T* __restrict__ pts, const T* __restrict__ vals, const int64_t* __restrict__ perm,
                    const int64_t* __restrict__ bin_ptr, const T* __restrict__ coeffs_g, Geo g, int64_t M,
                    T* __restrict__ out) {
  T* tile = cuda::dynamic_smem<T>();
  const int64_t tile_nodes = g.bs[0] * g.bs[1] * g.bs[2];
  T* coeffs = tile + 2 * tile_nodes;
  const int64_t b = blockIdx.y;
  int64_t t[3], o[3], e[3];
  {
    int64_t rest = blockIdx.x;
    for (int s = 2; s >= 0; --s) {
      t[s] = rest % g.nb[s];
      rest /= g.nb[s];
      o[s] = t[s] * g.bs[s];
      e[s] = min(g.bs[s], g.n[s] - o[s]);
    }
  }
  for (int64_t i = threadIdx.x; i < 2 * tile_nodes; i += blockDim.x) tile[i] = T(0);
  for (int i = threadIdx.x; i < g.nc * W; i += blockDim.x) coeffs[i] = coeffs_g[i];
  __syncthreads();

  constexpr int off = 3 - D;
  BinRange br[3];
  for (int s = 0; s < 3; ++s) br[s] = bin_range(t[s], s, g);
  for (int64_t q0 = 0; q0 < br[0].count; ++q0) {
    for (int64_t q1 = 0; q1 < br[1].count; ++q1) {
      for (int64_t q2 = 0; q2 < br[2].count; ++q2) {
        const int64_t bin = (br[0].at(q0) * g.nb[1] + br[1].at(q1)) * g.nb[2] + br[2].at(q2);
        const int64_t p_end = bin_ptr[bin + 1];
        for (int64_t p = bin_ptr[bin] + threadIdx.x; p < p_end; p += blockDim.x) {
          const int64_t j = perm[p];
          T ker[3][W];
          int loc[3][W];  // tile-local node of each footprint node, -1 outside the tile
          for (int s = 0; s < 3; ++s) {
            if (s < off) {
              ker[s][0] = T(1);
              loc[s][0] = 0;
              for (int a = 1; a < W; ++a) ker[s][a] = T(0), loc[s][a] = -1;
              continue;
            }
            const int64_t i0 = cuda::point_kernel<T, W>(double(pts[j * D + (s - off)]), s, g, coeffs, ker[s]);
#pragma unroll
            for (int a = 0; a < W; ++a) {
              const int64_t l = cuda::wrap_index(i0 + a - o[s], g.n[s]);
              loc[s][a] = (a < g.w && l < e[s]) ? int(l) : -1;
            }
          }
          const T cr = vals[2 * (b * M + j)], ci = vals[2 * (b * M + j) + 1];
          for (int a0 = 0; a0 < W; ++a0) {
            if (loc[0][a0] < 0) continue;
            for (int a1 = 0; a1 < W; ++a1) {
              if (loc[1][a1] < 0) continue;
              const T f = ker[0][a0] * ker[1][a1];
              const int64_t row = (int64_t(loc[0][a0]) * g.bs[1] + loc[1][a1]) * g.bs[2];
#pragma unroll
              for (int a2 = 0; a2 < W; ++a2) {
                if (loc[2][a2] < 0) continue;
                const T k = f * ker[2][a2];
                atomicAdd(&tile[2 * (row + loc[2][a2])], cr * k);
                atomicAdd(&tile[2 * (row + loc[2][a2]) + 1], ci * k);
              }
            }
          }
        }
      }
    }
  }
  __syncthreads();
  const int64_t count = e[0] * e[1] * e[2];
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t l2 = i % e[2], l1 = (i / e[2]) % e[1], l0 = i / (e[1] * e[2]);
    const int64_t src = (l0 * g.bs[1] + l1) * g.bs[2] + l2;
    const int64_t dst = ((b * g.n[0] + o[0] + l0) * g.n[1] + o[1] + l1) * g.n[2] + o[2] + l2;
    out[2 * dst] = tile[2 * src];
    out[2 * dst + 1] = tile[2 * src + 1];
  }
}

template <typename T, int D, int W>
void launch_spread(const SpreadArgs& a, const Geo& g, at::Tensor& out) {
  const auto coeffs = cuda::horner_tensor(a, W, a.points.scalar_type(), a.points.device());
  const int64_t tiles = g.nb[0] * g.nb[1] * g.nb[2];
  const size_t smem = sizeof(T) * size_t(2 * g.bs[0] * g.bs[1] * g.bs[2] + g.nc * W);
  TORCH_CHECK_VALUE(smem <= 48 * 1024, "nufft_spread (CUDA): bins ", at::IntArrayRef(a.bins, a.dim),
                    " need ", smem, " bytes of shared memory per tile, more than 48 KiB");
  TORCH_CHECK_VALUE(a.B <= 65535, "nufft_spread (CUDA): at most 65535 channels per call, got ", a.B);
  const dim3 grid(unsigned(tiles), unsigned(a.B));
  auto stream = c10::cuda::getCurrentCUDAStream();
  cuda::launch(spread_tiles_kernel<T, D, W>, grid, cuda::kThreads, smem, stream,
      a.points.const_data_ptr<T>(), reinterpret_cast<const T*>(a.data.const_data_ptr<c10::complex<T>>()),
      a.perm.const_data_ptr<int64_t>(), a.bin_ptr.const_data_ptr<int64_t>(), coeffs.const_data_ptr<T>(), g, a.M,
      reinterpret_cast<T*>(out.data_ptr<c10::complex<T>>()));
}

template <typename T, int W>
void spread_dim(const SpreadArgs& a, const Geo& g, at::Tensor& out) {
  switch (a.dim) {
    case 1: return launch_spread<T, 1, W>(a, g, out);
    case 2: return launch_spread<T, 2, W>(a, g, out);
    default: return launch_spread<T, 3, W>(a, g, out);
  }
}

template <typename T>
void spread_width(const SpreadArgs& a, const Geo& g, at::Tensor& out) {
  switch (cuda::padded_width(a.width)) {
    case 4: return spread_dim<T, 4>(a, g, out);
    case 8: return spread_dim<T, 8>(a, g, out);
    case 12: return spread_dim<T, 12>(a, g, out);
    default: return spread_dim<T, 16>(a, g, out);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> nufft_sort_cuda(const at::Tensor& points_in, c10::IntArrayRef grid,
                                                   c10::IntArrayRef bins) {
  check_points(points_in, "points");
  const int dim = int(points_in.size(1));
  check_grid_and_bins(grid, bins, dim);
  for (const int64_t n : grid) TORCH_CHECK_VALUE(n >= 1, "grid sizes must be positive, got ", grid);
  c10::cuda::CUDAGuard guard(points_in.device());
  const auto points = points_in.contiguous();
  const int64_t M = points.size(0);
  TORCH_CHECK_VALUE(M == 0 || at::isfinite(points).all().item<bool>(), "points must be finite (found NaN or inf)");
  SpreadArgs a;
  a.dim = dim;
  for (int i = 0; i < kMaxDim; ++i) {
    a.grid[i] = i < dim ? grid[i] : 1;
    a.bins[i] = i < dim ? bins[i] : 1;
    a.nbins[i] = bin_count(a.grid[i], a.bins[i]);
  }
  a.width = 2;
  const Geo g = cuda::make_geo(a);
  const int64_t total = g.nb[0] * g.nb[1] * g.nb[2];
  auto keys = at::empty({M}, points.options().dtype(at::kLong));
  if (M > 0) {
    const unsigned blocks = unsigned((M + cuda::kThreads - 1) / cuda::kThreads);
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nufft_sort_cuda", [&] {
      cuda::launch(bin_keys_kernel<scalar_t>, blocks, cuda::kThreads, 0, stream, points.const_data_ptr<scalar_t>(), M,
                   dim, g, keys.data_ptr<int64_t>());
    });
  }
  auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto perm = std::get<1>(sorted);
  auto counts = at::bincount(keys, {}, total);
  auto bin_ptr = at::zeros({total + 1}, keys.options());
  bin_ptr.narrow(0, 1, total).copy_(at::cumsum(counts, 0));
  return {perm, bin_ptr};
}

at::Tensor nufft_spread_cuda(const at::Tensor& points, const at::Tensor& values, const at::Tensor& perm,
                             const at::Tensor& bin_ptr, c10::IntArrayRef grid, c10::IntArrayRef bins, int64_t width,
                             double beta) {
  const SpreadArgs a = check_spread_args(points, values, perm, bin_ptr, grid, bins, width, beta);
  c10::cuda::CUDAGuard guard(points.device());
  std::vector<int64_t> shape{a.B};
  for (int i = 0; i < a.dim; ++i) shape.push_back(a.grid[i]);
  if (a.M == 0 || a.B == 0) return at::zeros(shape, values.options());
  auto out = at::empty(shape, values.options());  // every node is written by its tile
  const Geo g = cuda::make_geo(a);
  if (a.points.scalar_type() == at::kDouble) {
    spread_width<double>(a, g, out);
  } else {
    spread_width<float>(a, g, out);
  }
  return out;
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("nufft_sort", &nufft_sort_cuda);
  m.impl("nufft_spread", &nufft_spread_cuda);
  m.impl("nufft_interp", &nufft_interp_cuda);
}

}  // namespace pyengine::nufft
