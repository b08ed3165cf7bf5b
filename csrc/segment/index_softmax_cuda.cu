// CUDA (log-)softmax over an unsorted index (segment/index_softmax.h): grid-stride
// kernels over the (entry, channel) pairs. The group maxima are an atomicMax on
// order-preserving integer images of the values (NaN above everything, so it sticks),
// the sums an atomicAdd in the accumulation type, then one pass writes every entry.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <type_traits>

#include "common/cuda_launch.cuh"
#include "common/dispatch.h"
#include "common/reducers.h"
#include "segment/functors.h"
#include "segment/index_softmax.h"

namespace pyengine::segment {
namespace {

constexpr int kThreads = 256;

template <typename acc_t>
using bits_t = std::conditional_t<std::is_same_v<acc_t, float>, unsigned int, unsigned long long>;

dim3 grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return dim3(unsigned(blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8));
}

template <typename scalar_t, typename acc_t>
__global__ void group_max_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ index, int64_t E,
                                 int64_t C, int64_t N, bits_t<acc_t>* __restrict__ mx) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < E * C; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = k / C, n = index[e];
    if (n < 0 || n >= N) continue;
    atomicMax(&mx[n * C + k % C], static_cast<bits_t<acc_t>>(ordered_bits(static_cast<acc_t>(x[k]))));
  }
}

// sum[n, c] += exp(x - max) (softmax statistics; max decoded from its bits, 0 = empty group).
template <typename scalar_t, typename acc_t>
__global__ void group_expsum_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ index, int64_t E,
                                    int64_t C, int64_t N, const bits_t<acc_t>* __restrict__ mx,
                                    acc_t* __restrict__ sum) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < E * C; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = k / C, n = index[e];
    if (n < 0 || n >= N) continue;
    const int64_t i = n * C + k % C;
    const acc_t m = from_ordered_bits(mx[i]);
    if (m == -std::numeric_limits<acc_t>::infinity()) continue;
    atomicAdd(&sum[i], fast_exp(static_cast<acc_t>(x[k]) - m));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void softmax_out_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ index, int64_t E,
                                   int64_t C, int64_t N, const bits_t<acc_t>* __restrict__ mx,
                                   const acc_t* __restrict__ sum, bool log, scalar_t* __restrict__ out) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < E * C; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = k / C, n = index[e];
    if (n < 0 || n >= N) {  // only reachable with input checks off
      out[k] = static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
      continue;
    }
    const int64_t i = n * C + k % C;
    out[k] = static_cast<scalar_t>(softmax_value(static_cast<acc_t>(x[k]), from_ordered_bits(mx[i]), sum[i], log));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void grad_sum_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ y,
                                const int64_t* __restrict__ index, int64_t E, int64_t C, int64_t N, bool log,
                                acc_t* __restrict__ s) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < E * C; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = k / C, n = index[e];
    if (n < 0 || n >= N) continue;
    atomicAdd(&s[n * C + k % C], softmax_grad_load(static_cast<acc_t>(g[k]), static_cast<acc_t>(y[k]), log));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void grad_out_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ y,
                                const int64_t* __restrict__ index, int64_t E, int64_t C, int64_t N,
                                const acc_t* __restrict__ s, bool log, scalar_t* __restrict__ gi) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < E * C; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = k / C, n = index[e];
    if (n < 0 || n >= N) {
      gi[k] = static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
      continue;
    }
    gi[k] = static_cast<scalar_t>(
        softmax_grad(static_cast<acc_t>(g[k]), static_cast<acc_t>(y[k]), s[n * C + k % C], log));
  }
}

}  // namespace

at::Tensor index_softmax_cuda(const at::Tensor& src_in, const at::Tensor& index_in, int64_t num_nodes, bool log) {
  const IndexArgs a = check_index_args(src_in, index_in, num_nodes, "src");
  c10::cuda::CUDAGuard guard(a.src.device());
  const int64_t E = a.num_edges, C = a.channels, N = a.num_nodes;
  auto out = at::empty_like(a.src);
  if (E == 0 || C == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid = grid_for(E * C);
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "index_softmax_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using bits = bits_t<acc_t>;
    const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
    // the bit images need an unsigned type of the accumulator's width: int32 / int64 storage
    auto mx = at::zeros({N, C}, a.src.options().dtype(std::is_same_v<acc_t, float> ? at::kInt : at::kLong));
    auto sum = at::zeros({N, C}, a.src.options().dtype(acc_type));
    bits* mxp = reinterpret_cast<bits*>(mx.data_ptr());
    const scalar_t* x = a.src.const_data_ptr<scalar_t>();
    const int64_t* index = a.index.const_data_ptr<int64_t>();
    pyengine::cuda::launch(group_max_kernel<scalar_t, acc_t>, grid, dim3(kThreads), 0, stream, x, index, E, C, N, mxp);
    pyengine::cuda::launch(group_expsum_kernel<scalar_t, acc_t>, grid, dim3(kThreads), 0, stream, x, index, E, C, N,
                           static_cast<const bits*>(mxp), sum.data_ptr<acc_t>());
    pyengine::cuda::launch(softmax_out_kernel<scalar_t, acc_t>, grid, dim3(kThreads), 0, stream, x, index, E, C, N,
                           static_cast<const bits*>(mxp), sum.const_data_ptr<acc_t>(), log,
                           out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor index_softmax_backward_cuda(const at::Tensor& grad_in, const at::Tensor& out_in,
                                       const at::Tensor& index_in, int64_t num_nodes, bool log) {
  at::Tensor grad;
  const IndexArgs a = check_index_backward_args(grad_in, out_in, index_in, num_nodes, grad);
  c10::cuda::CUDAGuard guard(a.src.device());
  const int64_t E = a.num_edges, C = a.channels, N = a.num_nodes;
  auto grad_src = at::empty_like(a.src);
  if (E == 0 || C == 0) return grad_src;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid = grid_for(E * C);
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "index_softmax_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto s = at::zeros({N, C}, a.src.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const scalar_t* y = a.src.const_data_ptr<scalar_t>();
    const int64_t* index = a.index.const_data_ptr<int64_t>();
    pyengine::cuda::launch(grad_sum_kernel<scalar_t, acc_t>, grid, dim3(kThreads), 0, stream, g, y, index, E, C, N,
                           log, s.data_ptr<acc_t>());
    pyengine::cuda::launch(grad_out_kernel<scalar_t, acc_t>, grid, dim3(kThreads), 0, stream, g, y, index, E, C, N,
                           s.const_data_ptr<acc_t>(), log, grad_src.data_ptr<scalar_t>());
  });
  return grad_src;
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("index_softmax", &index_softmax_cuda);
  m.impl("index_softmax_backward", &index_softmax_backward_cuda);
}

}  // namespace pyengine::segment
