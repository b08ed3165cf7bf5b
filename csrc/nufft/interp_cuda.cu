// CUDA type-2 interpolation: one thread per point, visited in bin-sorted order
// so that the threads of a warp read neighbouring grid nodes (cached). Each
// thread evaluates its kernel values once and loops over all B channels, so a
// single launch serves every channel.
#include "nufft/common_cuda.cuh"

namespace pyengine::nufft {
namespace {
using cuda::Geo;

template <typename T, int D, int W>
__global__ void __launch_bounds__(cuda::kThreads)
interp_kernel(const T* __restrict__ pts, const T* __restrict__ fine, const int64_t* __restrict__ perm,
              const T* __restrict__ coeffs_g, Geo g, int64_t M, int64_t B, T* __restrict__ out) {
  __shared__ T coeffs[kMaxCoeffs * W];
  for (int i = threadIdx.x; i < g.nc * W; i += blockDim.x) coeffs[i] = coeffs_g[i];
  __syncthreads();
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= M) return;
  const int64_t j = perm[p];
  constexpr int off = 3 - D;
  T ker[D][W];
  int64_t idx[D][W];  // wrapped node index per dimension
  for (int i = 0; i < D; ++i) {
    const int s = off + i;
    const int64_t i0 = cuda::point_kernel<T, W>(double(pts[j * D + i]), s, g, coeffs, ker[i]);
#pragma unroll
    for (int a = 0; a < W; ++a) idx[i][a] = cuda::wrap_index(i0 + a, g.n[s]);
  }
  const int64_t plane = g.n[0] * g.n[1] * g.n[2];
  const int wd = g.w;
  for (int64_t b = 0; b < B; ++b) {
    const T* fb = fine + 2 * b * plane;
    T re = 0, im = 0;
    if constexpr (D == 1) {
      for (int a = 0; a < wd; ++a) {
        re += ker[0][a] * fb[2 * idx[0][a]];
        im += ker[0][a] * fb[2 * idx[0][a] + 1];
      }
    } else if constexpr (D == 2) {
      for (int a0 = 0; a0 < wd; ++a0) {
        const T* row = fb + 2 * idx[0][a0] * g.n[2];
        T rr = 0, ri = 0;
        for (int a1 = 0; a1 < wd; ++a1) {
          rr += ker[1][a1] * row[2 * idx[1][a1]];
          ri += ker[1][a1] * row[2 * idx[1][a1] + 1];
        }
        re += ker[0][a0] * rr;
        im += ker[0][a0] * ri;
      }
    } else {
      for (int a0 = 0; a0 < wd; ++a0) {
        T pr = 0, pi = 0;
        for (int a1 = 0; a1 < wd; ++a1) {
          const T* row = fb + 2 * (idx[0][a0] * g.n[1] + idx[1][a1]) * g.n[2];
          T rr = 0, ri = 0;
          for (int a2 = 0; a2 < wd; ++a2) {
            rr += ker[2][a2] * row[2 * idx[2][a2]];
            ri += ker[2][a2] * row[2 * idx[2][a2] + 1];
          }
          pr += ker[1][a1] * rr;
          pi += ker[1][a1] * ri;
        }
        re += ker[0][a0] * pr;
        im += ker[0][a0] * pi;
      }
    }
    out[2 * (b * M + j)] = re;
    out[2 * (b * M + j) + 1] = im;
  }
}

template <typename T, int D, int W>
void launch_interp(const SpreadArgs& a, const Geo& g, at::Tensor& out) {
  const auto coeffs = cuda::horner_tensor(a, W, a.points.scalar_type(), a.points.device());
  const unsigned blocks = unsigned((a.M + cuda::kThreads - 1) / cuda::kThreads);
  auto stream = c10::cuda::getCurrentCUDAStream();
  cuda::launch(interp_kernel<T, D, W>, blocks, cuda::kThreads, 0, stream,
      a.points.const_data_ptr<T>(), reinterpret_cast<const T*>(a.data.const_data_ptr<c10::complex<T>>()),
      a.perm.const_data_ptr<int64_t>(), coeffs.const_data_ptr<T>(), g, a.M, a.B,
      reinterpret_cast<T*>(out.data_ptr<c10::complex<T>>()));
}

template <typename T, int W>
void interp_dim(const SpreadArgs& a, const Geo& g, at::Tensor& out) {
  switch (a.dim) {
    case 1: return launch_interp<T, 1, W>(a, g, out);
    case 2: return launch_interp<T, 2, W>(a, g, out);
    default: return launch_interp<T, 3, W>(a, g, out);
  }
}

template <typename T>
void interp_width(const SpreadArgs& a, const Geo& g, at::Tensor& out) {
  switch (cuda::padded_width(a.width)) {
    case 4: return interp_dim<T, 4>(a, g, out);
    case 8: return interp_dim<T, 8>(a, g, out);
    case 12: return interp_dim<T, 12>(a, g, out);
    default: return interp_dim<T, 16>(a, g, out);
  }
}

}  // namespace

at::Tensor nufft_interp_cuda(const at::Tensor& points, const at::Tensor& fine, const at::Tensor& perm,
                             const at::Tensor& bin_ptr, c10::IntArrayRef bins, int64_t width, double beta) {
  const SpreadArgs a = check_interp_args(points, fine, perm, bin_ptr, bins, width, beta);
  c10::cuda::CUDAGuard guard(points.device());
  auto out = at::empty({a.B, a.M}, fine.options());
  if (a.M == 0 || a.B == 0) return out;
  const Geo g = cuda::make_geo(a);
  if (a.points.scalar_type() == at::kDouble) {
    interp_width<double>(a, g, out);
  } else {
    interp_width<float>(a, g, out);
  }
  return out;
}

}  // namespace pyengine::nufft
