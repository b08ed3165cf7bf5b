// CUDA kernels of the fused CSR attention (see attention.h for the math).
//
// One warp per (row, head): lanes hold the head's channels (kPer per lane, so
// head dims up to 32 * kPer), a score is a warp all-reduce of the lane partial
// dot products, and the online-softmax state (max, sum, Dv accumulators) stays
// in registers, so nothing per edge is written to global memory. Backward
// recomputes the probabilities from the saved log-sum-exp: one warp per
// (row, head) for grad_q / grad_bias, one warp per (source, head) over the
// transposed CSR for grad_k / grad_v (gathers only: no atomics, deterministic).
// Long rows are not split across warps yet: a huge row runs on one warp.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>

#include "common/dispatch.h"
#include "integral/attention.h"

namespace pyengine::attention {
namespace {

constexpr int kWarps = 8;  // warps per block

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

template <typename acc_t>
__device__ __forceinline__ acc_t neg_inf() {
  return -std::numeric_limits<acc_t>::infinity();
}

// Lane-partial dot product of a register vector (channels lane + 32 t) with a row in memory.
template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ acc_t lane_dot(const acc_t (&a)[kPer], const scalar_t* __restrict__ row, int64_t D,
                                          int lane) {
  acc_t s = 0;
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = lane + 32 * t;
    if (c < D) s += a[t] * static_cast<acc_t>(row[c]);
  }
  return s;
}

template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void load_row(acc_t (&a)[kPer], const scalar_t* __restrict__ row, int64_t D, int lane,
                                         acc_t mult) {
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = lane + 32 * t;
    a[t] = c < D ? mult * static_cast<acc_t>(row[c]) : acc_t(0);
  }
}

template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void axpy(acc_t (&acc)[kPer], acc_t p, const scalar_t* __restrict__ row, int64_t D,
                                     int lane) {
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = lane + 32 * t;
    if (c < D) acc[t] += p * static_cast<acc_t>(row[c]);
  }
}

template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void store_row(scalar_t* __restrict__ row, const acc_t (&a)[kPer], int64_t D, int lane,
                                          acc_t mult) {
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = lane + 32 * t;
    if (c < D) row[c] = static_cast<scalar_t>(mult * a[t]);
  }
}

template <typename scalar_t, typename index_t, int kPer>
__global__ void forward_kernel(const int64_t* __restrict__ row_ptr, const index_t* __restrict__ col,
                               const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                               const scalar_t* __restrict__ v, const scalar_t* __restrict__ bias, int64_t M,
                               int64_t H, int64_t Dk, int64_t Dv, at::opmath_type<scalar_t> scale,
                               scalar_t* __restrict__ out, at::opmath_type<scalar_t>* __restrict__ lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= M * H) return;  // uniform across the warp
  const int lane = threadIdx.x & 31;
  const int64_t r = item / H, h = item - r * H;
  acc_t qa[kPer], acc[kPer];
  load_row<kPer>(qa, q + item * Dk, Dk, lane, scale);
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0;
  acc_t m = neg_inf<acc_t>(), l = 0;
  for (int64_t e = row_ptr[r]; e < row_ptr[r + 1]; ++e) {
    const int64_t jh = static_cast<int64_t>(col[e]) * H + h;
    acc_t s = warp_sum(lane_dot<kPer>(qa, k + jh * Dk, Dk, lane));
    if (bias) s += static_cast<acc_t>(bias[e * H + h]);
    if (s == neg_inf<acc_t>()) continue;  // masked edge (s is the same in every lane)
    if (s > m) {
      const acc_t f = ::exp(m - s);
      l *= f;
#pragma unroll
      for (int t = 0; t < kPer; ++t) acc[t] *= f;
      m = s;
    }
    const acc_t p = ::exp(s - m);
    l += p;
    axpy<kPer>(acc, p, v + jh * Dv, Dv, lane);
  }
  const bool empty = l == acc_t(0);
  store_row<kPer>(out + item * Dv, acc, Dv, lane, empty ? acc_t(0) : acc_t(1) / l);
  if (lane == 0) lse[item] = empty ? neg_inf<acc_t>() : m + ::log(l);
}

template <typename scalar_t, typename index_t, int kPer>
__global__ void backward_rows_kernel(const int64_t* __restrict__ row_ptr, const index_t* __restrict__ col,
                                     const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                                     const scalar_t* __restrict__ v, const scalar_t* __restrict__ bias,
                                     const scalar_t* __restrict__ grad_out,
                                     const at::opmath_type<scalar_t>* __restrict__ lse,
                                     const at::opmath_type<scalar_t>* __restrict__ delta, int64_t M, int64_t H,
                                     int64_t Dk, int64_t Dv, at::opmath_type<scalar_t> scale,
                                     scalar_t* __restrict__ grad_q, scalar_t* __restrict__ grad_bias) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= M * H) return;
  const int lane = threadIdx.x & 31;
  const int64_t r = item / H, h = item - r * H;
  const acc_t L = lse[item], dl = delta[item];
  const bool live = L != neg_inf<acc_t>();
  acc_t qa[kPer], ga[kPer], dq[kPer];
  load_row<kPer>(qa, q + item * Dk, Dk, lane, scale);
  load_row<kPer>(ga, grad_out + item * Dv, Dv, lane, acc_t(1));
#pragma unroll
  for (int t = 0; t < kPer; ++t) dq[t] = 0;
  for (int64_t e = row_ptr[r]; e < row_ptr[r + 1]; ++e) {
    acc_t ds = 0;
    if (live) {
      const int64_t jh = static_cast<int64_t>(col[e]) * H + h;
      acc_t s = warp_sum(lane_dot<kPer>(qa, k + jh * Dk, Dk, lane));
      if (bias) s += static_cast<acc_t>(bias[e * H + h]);
      const acc_t p = ::exp(s - L);
      ds = p * (warp_sum(lane_dot<kPer>(ga, v + jh * Dv, Dv, lane)) - dl);
      axpy<kPer>(dq, ds, k + jh * Dk, Dk, lane);
    }
    if (grad_bias && lane == 0) grad_bias[e * H + h] = static_cast<scalar_t>(ds);
  }
  store_row<kPer>(grad_q + item * Dk, dq, Dk, lane, scale);
}

template <typename scalar_t, int kPer>
__global__ void backward_cols_kernel(const int64_t* __restrict__ row_ptr_t, const int64_t* __restrict__ rows,
                                     const int64_t* __restrict__ perm, const scalar_t* __restrict__ q,
                                     const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                     const scalar_t* __restrict__ bias, const scalar_t* __restrict__ grad_out,
                                     const at::opmath_type<scalar_t>* __restrict__ lse,
                                     const at::opmath_type<scalar_t>* __restrict__ delta, int64_t N, int64_t H,
                                     int64_t Dk, int64_t Dv, at::opmath_type<scalar_t> scale,
                                     scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= N * H) return;
  const int lane = threadIdx.x & 31;
  const int64_t j = item / H, h = item - j * H;
  acc_t ka[kPer], va[kPer], dk[kPer], dv[kPer];
  load_row<kPer>(ka, k + item * Dk, Dk, lane, scale);
  load_row<kPer>(va, v + item * Dv, Dv, lane, acc_t(1));
#pragma unroll
  for (int t = 0; t < kPer; ++t) dk[t] = dv[t] = 0;
  for (int64_t t = row_ptr_t[j]; t < row_ptr_t[j + 1]; ++t) {
    const int64_t ih = rows[t] * H + h;
    const acc_t L = lse[ih];
    if (L == neg_inf<acc_t>()) continue;
    acc_t s = warp_sum(lane_dot<kPer>(ka, q + ih * Dk, Dk, lane));
    if (bias) s += static_cast<acc_t>(bias[perm[t] * H + h]);
    const acc_t p = ::exp(s - L);
    const acc_t ds = p * (warp_sum(lane_dot<kPer>(va, grad_out + ih * Dv, Dv, lane)) - delta[ih]);
    axpy<kPer>(dv, p, grad_out + ih * Dv, Dv, lane);
    axpy<kPer>(dk, ds, q + ih * Dk, Dk, lane);
  }
  store_row<kPer>(grad_k + item * Dk, dk, Dk, lane, scale);
  store_row<kPer>(grad_v + item * Dv, dv, Dv, lane, acc_t(1));
}

// Calls fn with kPer = channels per lane for the larger head dim (<= 128).
template <class Fn>
void dispatch_per_lane(int64_t Dk, int64_t Dv, const Fn& fn) {
  const int64_t D = std::max(Dk, Dv);
  TORCH_CHECK_VALUE(D <= 128, "csr_attention on CUDA supports head dims up to 128, got dk = ", Dk, ", dv = ", Dv);
  if (D <= 32) {
    fn(std::integral_constant<int, 1>{});
  } else if (D <= 64) {
    fn(std::integral_constant<int, 2>{});
  } else {
    fn(std::integral_constant<int, 4>{});
  }
}

unsigned num_blocks(int64_t items) {
  const int64_t blocks = (items + kWarps - 1) / kWarps;
  TORCH_CHECK_VALUE(blocks <= int64_t(std::numeric_limits<int32_t>::max()), "csr_attention: too many rows x heads (",
                    items, ") for one launch");
  return unsigned(std::max<int64_t>(blocks, 1));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> csr_attention_cuda(const at::Tensor& row_ptr, const at::Tensor& col,
                                                      const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                      const std::optional<at::Tensor>& bias, double scale) {
  const AttentionArgs a = check_attention_args(row_ptr, col, q, k, v, bias, scale);
  c10::cuda::CUDAGuard guard(a.q.device());
  auto out = at::empty({a.num_rows, a.heads, a.dv}, a.q.options());
  auto lse = at::empty({a.num_rows, a.heads}, a.q.options().dtype(acc_dtype(a.q.scalar_type())));
  const int64_t items = a.num_rows * a.heads;
  if (items == 0) return {out, lse};
  auto stream = c10::cuda::getCurrentCUDAStream();
  PYE_DISPATCH_FLOATING(a.q.scalar_type(), "csr_attention", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention", [&] {
      dispatch_per_lane(a.dk, a.dv, [&](auto per) {
        forward_kernel<scalar_t, index_t, decltype(per)::value><<<num_blocks(items), kWarps * 32, 0, stream>>>(
            a.row_ptr.const_data_ptr<int64_t>(), a.col.const_data_ptr<index_t>(), a.q.const_data_ptr<scalar_t>(),
            a.k.const_data_ptr<scalar_t>(), a.v.const_data_ptr<scalar_t>(),
            a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr, a.num_rows, a.heads, a.dk, a.dv,
            static_cast<acc_t>(scale), out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> csr_attention_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_ptr_t,
    const at::Tensor& col_t, const at::Tensor& perm, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const std::optional<at::Tensor>& bias, const at::Tensor& lse, const at::Tensor& delta, double scale) {
  const AttentionBackwardArgs b =
      check_attention_backward_args(grad_out, row_ptr, col, row_ptr_t, col_t, perm, q, k, v, bias, lse, delta, scale);
  const AttentionArgs& a = b.fwd;
  c10::cuda::CUDAGuard guard(a.q.device());
  auto grad_q = at::empty_like(a.q);
  auto grad_k = at::empty_like(a.k);
  auto grad_v = at::empty_like(a.v);
  auto grad_bias = a.bias.defined() ? at::empty_like(a.bias) : at::empty({0}, a.q.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  PYE_DISPATCH_FLOATING(a.q.scalar_type(), "csr_attention_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* bias_p = a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr;
    dispatch_per_lane(a.dk, a.dv, [&](auto per) {
      constexpr int kPer = decltype(per)::value;
      const int64_t row_items = a.num_rows * a.heads, col_items = a.num_src * a.heads;
      if (row_items > 0) {
        AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention_backward", [&] {
          backward_rows_kernel<scalar_t, index_t, kPer><<<num_blocks(row_items), kWarps * 32, 0, stream>>>(
              a.row_ptr.const_data_ptr<int64_t>(), a.col.const_data_ptr<index_t>(), a.q.const_data_ptr<scalar_t>(),
              a.k.const_data_ptr<scalar_t>(), a.v.const_data_ptr<scalar_t>(), bias_p,
              b.grad_out.const_data_ptr<scalar_t>(), b.lse.const_data_ptr<acc_t>(), b.delta.const_data_ptr<acc_t>(),
              a.num_rows, a.heads, a.dk, a.dv, static_cast<acc_t>(scale), grad_q.data_ptr<scalar_t>(),
              a.bias.defined() ? grad_bias.data_ptr<scalar_t>() : nullptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      }
      if (col_items > 0) {
        backward_cols_kernel<scalar_t, kPer><<<num_blocks(col_items), kWarps * 32, 0, stream>>>(
            b.row_ptr_t.const_data_ptr<int64_t>(), b.col_t.const_data_ptr<int64_t>(),
            b.perm.const_data_ptr<int64_t>(), a.q.const_data_ptr<scalar_t>(), a.k.const_data_ptr<scalar_t>(),
            a.v.const_data_ptr<scalar_t>(), bias_p, b.grad_out.const_data_ptr<scalar_t>(),
            b.lse.const_data_ptr<acc_t>(), b.delta.const_data_ptr<acc_t>(), a.num_src, a.heads, a.dk, a.dv,
            static_cast<acc_t>(scale), grad_k.data_ptr<scalar_t>(), grad_v.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  return {grad_q, grad_k, grad_v, grad_bias};
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("csr_attention", &csr_attention_cuda);
  m.impl("csr_attention_backward", &csr_attention_backward_cuda);
}

}  // namespace pyengine::attention
