// CUDA farthest point sampling: one block per cloud. Each iteration the block's
// threads update the running minimum squared distance of their points (strided)
// to the last sample, reduce (value, index) to the farthest point (warp shuffles,
// then one warp over the per-warp winners; ties go to the lowest index) and
// thread 0 records it. The minimum distances live in a global scratch array.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "common/cuda_launch.cuh"
#include "sampling/sampling.h"

namespace pyengine::sampling {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Does (v, i) beat (bv, bi)? Larger distance first, then the lower index.
template <typename scalar_t>
__device__ __forceinline__ bool better(scalar_t v, int64_t i, scalar_t bv, int64_t bi) {
  return v > bv || (v == bv && i < bi);
}

template <typename scalar_t>
__device__ __forceinline__ void warp_argmax(scalar_t& v, int64_t& i) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const scalar_t ov = __shfl_xor_sync(0xffffffffu, v, off);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, i, off);
    if (better(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fps_kernel(const scalar_t* __restrict__ points, const int64_t* __restrict__ ptr,
               const int64_t* __restrict__ out_ptr, const int64_t* __restrict__ start, int64_t N, int64_t D,
               int64_t total, scalar_t* __restrict__ mind, int64_t* __restrict__ out) {
  __shared__ scalar_t red_v[kWarps];
  __shared__ int64_t red_i[kWarps];
  __shared__ int64_t cur_s;
  const int64_t b = blockIdx.x;
  const int64_t p0 = clamp64(ptr[b], 0, N);
  const int64_t n = clamp64(ptr[b + 1] - p0, 0, N - p0);
  const int64_t o0 = clamp64(out_ptr[b], 0, total);
  const int64_t want = out_ptr[b + 1] - o0 < n ? out_ptr[b + 1] - o0 : n;
  const int64_t count = clamp64(want, 0, total - o0);
  if (count <= 0) return;  // uniform over the block
  const scalar_t* P = points + p0 * D;
  scalar_t* md = mind + p0;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int64_t cur = clamp64(start[b], 0, n - 1);
  if (threadIdx.x == 0) out[o0] = p0 + cur;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) md[j] = std::numeric_limits<scalar_t>::infinity();
  for (int64_t it = 1; it < count; ++it) {
    const scalar_t* c = P + cur * D;
    scalar_t bv = scalar_t(-1);
    int64_t bi = n;
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      const scalar_t* x = P + j * D;
      scalar_t d = 0;
      for (int64_t k = 0; k < D; ++k) {
        const scalar_t t = x[k] - c[k];
        d += t * t;
      }
      scalar_t m = md[j];
      if (d < m) {
        m = d;
        md[j] = m;
      }
      if (better(m, j, bv, bi)) {
        bv = m;
        bi = j;
      }
    }
    warp_argmax(bv, bi);
    if (lane == 0) {
      red_v[warp] = bv;
      red_i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
      bv = lane < kWarps ? red_v[lane] : scalar_t(-1);
      bi = lane < kWarps ? red_i[lane] : n;
      warp_argmax(bv, bi);
      if (lane == 0) {
        cur_s = bi;
        out[o0 + it] = p0 + bi;
      }
    }
    __syncthreads();
    cur = cur_s;
  }
}

}  // namespace

at::Tensor fps_cuda(const at::Tensor& points, const at::Tensor& ptr, const at::Tensor& out_ptr,
                    const at::Tensor& start) {
  const FpsArgs a = check_fps_args(points, ptr, out_ptr, start);
  c10::cuda::CUDAGuard guard(a.points.device());
  const int64_t B = a.num_batches;
  const int64_t total = B > 0 ? std::max<int64_t>(a.out_ptr.select(0, B).item<int64_t>(), 0) : 0;
  auto out = at::empty({total}, a.ptr.options());
  if (total == 0 || a.num_points == 0) return out;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(a.points.scalar_type(), "fps_cuda", [&] {
    auto mind = at::empty({a.num_points}, a.points.options());
    pyengine::cuda::launch(fps_kernel<scalar_t>, dim3(unsigned(B)), dim3(kThreads), 0, stream,
                           a.points.const_data_ptr<scalar_t>(), a.ptr.const_data_ptr<int64_t>(),
                           a.out_ptr.const_data_ptr<int64_t>(), a.start.const_data_ptr<int64_t>(), a.num_points,
                           a.dim, total, mind.data_ptr<scalar_t>(), out.data_ptr<int64_t>());
  });
  return out;
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) { m.impl("fps", &fps_cuda); }

}  // namespace pyengine::sampling
