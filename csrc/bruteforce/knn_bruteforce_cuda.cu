// CUDA brute-force kNN: one thread per query, 128 queries per block. The block
// streams the points of its queries' clouds through shared memory in tiles of
// kTileP points x kTileD coordinates; each thread accumulates the exact squared
// distances (or inner products, for cosine) of its query to the kTileP points of
// a tile over all coordinate chunks, then offers them to its running top k,
// kept sorted in its own output row. Any dimension d >= 1.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "bruteforce/bruteforce.h"
#include "common/cuda_launch.cuh"

namespace pyengine::bruteforce {
namespace {

constexpr int kThreads = 128;
constexpr int kTileP = 32;
constexpr int kTileD = 32;

// Cloud of query q: the b with query_ptr[b] <= q < query_ptr[b + 1] (binary search).
__device__ __forceinline__ int64_t cloud_of(const int64_t* __restrict__ query_ptr, int64_t num_batches, int64_t q) {
  int64_t lo = 0, hi = num_batches;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (query_ptr[mid] <= q) lo = mid; else hi = mid;
  }
  return lo;
}

__device__ __forceinline__ float sqrt_of(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_of(double x) { return ::sqrt(x); }

__device__ __forceinline__ int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    knn_tile_kernel(const scalar_t* __restrict__ points, const scalar_t* __restrict__ queries,
                    const int64_t* __restrict__ point_ptr, const int64_t* __restrict__ query_ptr,
                    const scalar_t* __restrict__ pnorm, const scalar_t* __restrict__ qnorm, int64_t N, int64_t M,
                    int64_t D, int64_t B, int64_t K, bool cosine, scalar_t* __restrict__ dist,
                    int64_t* __restrict__ idx) {
  scalar_t* tile = pyengine::cuda::dynamic_smem<scalar_t>();  // (kTileP, kTileD)
  const int64_t first = int64_t(blockIdx.x) * kThreads;
  const int64_t last = (first + kThreads < M ? first + kThreads : M) - 1;
  const int64_t q = first + threadIdx.x;
  const bool active = q < M;
  // This thread's cloud, and the union of the block's clouds (queries are sorted by cloud).
  int64_t lo = 0, hi = 0;
  if (active) {
    const int64_t b = cloud_of(query_ptr, B, q);
    lo = clamp64(point_ptr[b], 0, N);
    hi = clamp64(point_ptr[b + 1], lo, N);
  }
  const int64_t block_lo = clamp64(point_ptr[cloud_of(query_ptr, B, first)], 0, N);
  const int64_t block_hi = clamp64(point_ptr[cloud_of(query_ptr, B, last) + 1], block_lo, N);
  scalar_t* dr = dist + (active ? q : 0) * K;
  int64_t* ir = idx + (active ? q : 0) * K;
  scalar_t worst_d = std::numeric_limits<scalar_t>::infinity();
  int64_t worst_j = -1;
  const scalar_t nq = active ? qnorm[q] : scalar_t(0);

  for (int64_t p0 = block_lo; p0 < block_hi; p0 += kTileP) {
    scalar_t acc[kTileP];
#pragma unroll
    for (int t = 0; t < kTileP; ++t) acc[t] = scalar_t(0);
    for (int64_t c0 = 0; c0 < D; c0 += kTileD) {
      const int dc = int(D - c0 < kTileD ? D - c0 : kTileD);
      for (int e = threadIdx.x; e < kTileP * kTileD; e += kThreads) {
        const int t = e / kTileD, c = e % kTileD;
        const int64_t p = p0 + t;
        tile[e] = (p < block_hi && c < dc) ? points[p * D + c0 + c] : scalar_t(0);
      }
      __syncthreads();
      if (active) {
        const scalar_t* qr = queries + q * D + c0;
        for (int c = 0; c < dc; ++c) {
          const scalar_t x = qr[c];
#pragma unroll
          for (int t = 0; t < kTileP; ++t) {
            const scalar_t y = tile[t * kTileD + c];
            if (cosine) {
              acc[t] += x * y;
            } else {
              const scalar_t diff = x - y;
              acc[t] += diff * diff;
            }
          }
        }
      }
      __syncthreads();
    }
    if (active) {
#pragma unroll
      for (int t = 0; t < kTileP; ++t) {
        const int64_t p = p0 + t;
        if (p < lo || p >= hi) continue;
        scalar_t d = acc[t];
        if (cosine) {
          const scalar_t den = nq * pnorm[p];
          d = den > scalar_t(0) ? scalar_t(1) - d / den : scalar_t(1);
        }
        if (beats_last(d, p, worst_d, worst_j)) {
          topk_insert(dr, ir, K, d, p);
          worst_d = dr[K - 1];
          worst_j = ir[K - 1];
        }
      }
    }
  }
  if (active && !cosine) {
    for (int64_t t = 0; t < K && ir[t] >= 0; ++t) dr[t] = sqrt_of(dr[t]);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_bruteforce_cuda(const at::Tensor& points, const at::Tensor& queries,
                                                       const at::Tensor& point_ptr, const at::Tensor& query_ptr,
                                                       int64_t k, bool cosine) {
  const KnnArgs a = check_knn_args(points, queries, point_ptr, query_ptr, k, cosine);
  c10::cuda::CUDAGuard guard(a.points.device());
  auto dist = at::full({a.num_queries, k}, std::numeric_limits<double>::infinity(), a.points.options());
  auto idx = at::full({a.num_queries, k}, -1, a.points.options().dtype(at::kLong));
  if (a.num_queries == 0 || a.num_points == 0 || a.num_batches == 0) return {dist, idx};
  const at::Tensor pn = cosine ? a.points.norm(2, {1}).contiguous() : at::zeros({a.num_points}, a.points.options());
  const at::Tensor qn = cosine ? a.queries.norm(2, {1}).contiguous() : at::zeros({a.num_queries}, a.points.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(a.points.scalar_type(), "knn_bruteforce_cuda", [&] {
    const dim3 grid(unsigned((a.num_queries + kThreads - 1) / kThreads));
    pyengine::cuda::launch(knn_tile_kernel<scalar_t>, grid, dim3(kThreads), kTileP * kTileD * sizeof(scalar_t),
                           stream, a.points.const_data_ptr<scalar_t>(), a.queries.const_data_ptr<scalar_t>(),
                           a.point_ptr.const_data_ptr<int64_t>(), a.query_ptr.const_data_ptr<int64_t>(),
                           pn.const_data_ptr<scalar_t>(), qn.const_data_ptr<scalar_t>(), a.num_points,
                           a.num_queries, a.dim, a.num_batches, a.k, cosine, dist.data_ptr<scalar_t>(),
                           idx.data_ptr<int64_t>());
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) { m.impl("knn_bruteforce", &knn_bruteforce_cuda); }

}  // namespace pyengine::bruteforce
