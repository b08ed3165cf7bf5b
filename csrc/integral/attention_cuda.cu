// CUDA kernels of the fused CSR attention (see attention.h for the math).
//
// One warp per (row, head). The warp is cut into groups of `gw` lanes (gw = the
// head dim rounded up to a power of two, at most 32); each group takes every
// (32 / gw)-th edge of the row, so short heads (D = 8, 16) still use all lanes.
// A lane holds kPer channels (cl + gw * t) of q and of its running accumulators;
// a score is a shuffle-sum within the group; each group keeps its own online
// softmax state (max, sum, Dv accumulators) in registers, and the groups' states
// are merged by shuffles at the end. Nothing per edge is written to global memory.
//
// Backward recomputes the probabilities from the saved log-sum-exp: one warp per
// (row, head) for grad_q / grad_bias, one warp per (source, head) over the
// transposed CSR for grad_k / grad_v (gathers only: no atomics, deterministic).
// Long rows are not split across warps yet: a huge row runs on one warp.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "common/cuda_launch.cuh"
#include "common/dispatch.h"
#include "integral/attention.h"

namespace pyengine::attention {
namespace {

constexpr int kWarps = 8;  // warps per block

template <typename acc_t>
__device__ __forceinline__ acc_t neg_inf() {
  return -std::numeric_limits<acc_t>::infinity();
}

// Lane geometry of one warp: groups of gw = 1 << gw_log2 lanes.
struct Lanes {
  int lane, cl, group, gw, groups;
  __device__ explicit Lanes(int gw_log2) {
    lane = threadIdx.x & 31;
    gw = 1 << gw_log2;
    cl = lane & (gw - 1);
    group = lane >> gw_log2;
    groups = 32 >> gw_log2;
  }
};

// Sum over the lanes of one group (all 32 lanes call it; xor offsets < gw stay in the group).
template <typename T>
__device__ __forceinline__ T group_sum(T x, int gw) {
  for (int off = gw >> 1; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Sum over the groups (xor offsets >= gw pair lanes holding the same channels).
template <typename T>
__device__ __forceinline__ T across_groups_sum(T x, int gw) {
  for (int off = gw; off < 32; off <<= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ acc_t lane_dot(const acc_t (&a)[kPer], const scalar_t* __restrict__ row, int64_t D,
                                          const Lanes& L) {
  acc_t s = 0;
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = L.cl + int64_t(L.gw) * t;
    if (c < D) s += a[t] * static_cast<acc_t>(row[c]);
  }
  return s;
}

template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void load_row(acc_t (&a)[kPer], const scalar_t* __restrict__ row, int64_t D,
                                         const Lanes& L, acc_t mult) {
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = L.cl + int64_t(L.gw) * t;
    a[t] = c < D ? mult * static_cast<acc_t>(row[c]) : acc_t(0);
  }
}

template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void axpy(acc_t (&acc)[kPer], acc_t p, const scalar_t* __restrict__ row, int64_t D,
                                     const Lanes& L) {
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = L.cl + int64_t(L.gw) * t;
    if (c < D) acc[t] += p * static_cast<acc_t>(row[c]);
  }
}

// Group 0 writes mult * a to row.
template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void store_row(scalar_t* __restrict__ row, const acc_t (&a)[kPer], int64_t D,
                                          const Lanes& L, acc_t mult) {
  if (L.group != 0) return;
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int64_t c = L.cl + int64_t(L.gw) * t;
    if (c < D) row[c] = static_cast<scalar_t>(mult * a[t]);
  }
}

template <typename scalar_t, typename index_t, int kPer>
__global__ void forward_kernel(const int64_t* __restrict__ row_ptr, const index_t* __restrict__ col,
                               const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                               const scalar_t* __restrict__ v, const scalar_t* __restrict__ bias, int64_t M,
                               int64_t H, int64_t Dk, int64_t Dv, at::opmath_type<scalar_t> scale, int gw_log2,
                               scalar_t* __restrict__ out, at::opmath_type<scalar_t>* __restrict__ lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= M * H) return;  // uniform across the warp
  const Lanes L(gw_log2);
  const int64_t r = item / H, h = item - r * H;
  acc_t qa[kPer], acc[kPer];
  load_row<kPer>(qa, q + item * Dk, Dk, L, scale);
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0;
  acc_t m = neg_inf<acc_t>(), l = 0;
  const int64_t beg = row_ptr[r], end = row_ptr[r + 1];
  // Every lane runs the same number of iterations (the shuffles need the whole warp).
  for (int64_t base = beg; base < end; base += L.groups) {
    const int64_t e = base + L.group;
    const bool valid = e < end;
    const int64_t jh = valid ? static_cast<int64_t>(col[e]) * H + h : 0;
    acc_t s = group_sum(valid ? lane_dot<kPer>(qa, k + jh * Dk, Dk, L) : acc_t(0), L.gw);
    if (valid && bias) s += static_cast<acc_t>(bias[e * H + h]);
    if (!valid || s == neg_inf<acc_t>()) continue;  // padding or masked edge: contributes nothing
    if (s > m) {
      const acc_t f = ::exp(m - s);
      l *= f;
#pragma unroll
      for (int t = 0; t < kPer; ++t) acc[t] *= f;
      m = s;
    }
    const acc_t p = ::exp(s - m);  // NaN scores propagate through here
    l += p;
    axpy<kPer>(acc, p, v + jh * Dv, Dv, L);
  }
  // Merge the groups' online-softmax states.
  for (int off = L.gw; off < 32; off <<= 1) {
    const acc_t m2 = __shfl_xor_sync(0xffffffffu, m, off);
    const acc_t l2 = __shfl_xor_sync(0xffffffffu, l, off);
    acc_t acc2[kPer];
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc2[t] = __shfl_xor_sync(0xffffffffu, acc[t], off);
    if (m2 == neg_inf<acc_t>()) continue;
    if (m == neg_inf<acc_t>()) {
      m = m2;
      l = l2;
#pragma unroll
      for (int t = 0; t < kPer; ++t) acc[t] = acc2[t];
      continue;
    }
    const acc_t mx = m > m2 ? m : m2;
    const acc_t f1 = ::exp(m - mx), f2 = ::exp(m2 - mx);
    l = l * f1 + l2 * f2;
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc[t] = acc[t] * f1 + acc2[t] * f2;
    m = mx;
  }
  const bool empty = l == acc_t(0);
  store_row<kPer>(out + item * Dv, acc, Dv, L, empty ? acc_t(0) : acc_t(1) / l);
  if (L.lane == 0) lse[item] = empty ? neg_inf<acc_t>() : m + ::log(l);
}

template <typename scalar_t, typename index_t, int kPer>
__global__ void backward_rows_kernel(const int64_t* __restrict__ row_ptr, const index_t* __restrict__ col,
                                     const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                                     const scalar_t* __restrict__ v, const scalar_t* __restrict__ bias,
                                     const scalar_t* __restrict__ grad_out,
                                     const at::opmath_type<scalar_t>* __restrict__ lse,
                                     const at::opmath_type<scalar_t>* __restrict__ delta, int64_t M, int64_t H,
                                     int64_t Dk, int64_t Dv, at::opmath_type<scalar_t> scale, int gw_log2,
                                     scalar_t* __restrict__ grad_q, scalar_t* __restrict__ grad_bias) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= M * H) return;
  const Lanes L(gw_log2);
  const int64_t r = item / H, h = item - r * H;
  const acc_t lse_r = lse[item], dl = delta[item];
  const bool live = lse_r != neg_inf<acc_t>();  // else every probability is 0
  acc_t qa[kPer], ga[kPer], dq[kPer];
  load_row<kPer>(qa, q + item * Dk, Dk, L, scale);
  load_row<kPer>(ga, grad_out + item * Dv, Dv, L, acc_t(1));
#pragma unroll
  for (int t = 0; t < kPer; ++t) dq[t] = 0;
  const int64_t beg = row_ptr[r], end = row_ptr[r + 1];
  for (int64_t base = beg; base < end; base += L.groups) {
    const int64_t e = base + L.group;
    const bool valid = e < end;
    const bool work = valid && live;
    const int64_t jh = valid ? static_cast<int64_t>(col[e]) * H + h : 0;
    acc_t s = group_sum(work ? lane_dot<kPer>(qa, k + jh * Dk, Dk, L) : acc_t(0), L.gw);
    const acc_t dp = group_sum(work ? lane_dot<kPer>(ga, v + jh * Dv, Dv, L) : acc_t(0), L.gw);
    acc_t ds = 0;
    if (work) {
      if (bias) s += static_cast<acc_t>(bias[e * H + h]);
      ds = ::exp(s - lse_r) * (dp - dl);
      axpy<kPer>(dq, ds, k + jh * Dk, Dk, L);
    }
    if (grad_bias && valid && L.cl == 0) grad_bias[e * H + h] = static_cast<scalar_t>(ds);
  }
#pragma unroll
  for (int t = 0; t < kPer; ++t) dq[t] = across_groups_sum(dq[t], L.gw);
  store_row<kPer>(grad_q + item * Dk, dq, Dk, L, scale);
}

template <typename scalar_t, int kPer>
__global__ void backward_cols_kernel(const int64_t* __restrict__ row_ptr_t, const int64_t* __restrict__ rows,
                                     const int64_t* __restrict__ perm, const scalar_t* __restrict__ q,
                                     const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                     const scalar_t* __restrict__ bias, const scalar_t* __restrict__ grad_out,
                                     const at::opmath_type<scalar_t>* __restrict__ lse,
                                     const at::opmath_type<scalar_t>* __restrict__ delta, int64_t N, int64_t H,
                                     int64_t Dk, int64_t Dv, at::opmath_type<scalar_t> scale, int gw_log2,
                                     scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= N * H) return;
  const Lanes L(gw_log2);
  const int64_t j = item / H, h = item - j * H;
  acc_t ka[kPer], va[kPer], dk[kPer], dv[kPer];
  load_row<kPer>(ka, k + item * Dk, Dk, L, scale);
  load_row<kPer>(va, v + item * Dv, Dv, L, acc_t(1));
#pragma unroll
  for (int t = 0; t < kPer; ++t) dk[t] = dv[t] = 0;
  const int64_t beg = row_ptr_t[j], end = row_ptr_t[j + 1];
  for (int64_t base = beg; base < end; base += L.groups) {
    const int64_t t_edge = base + L.group;
    const int64_t ih = t_edge < end ? rows[t_edge] * H + h : 0;
    const acc_t lse_i = t_edge < end ? lse[ih] : neg_inf<acc_t>();
    const bool work = lse_i != neg_inf<acc_t>();  // padding lanes and dead rows do nothing
    acc_t s = group_sum(work ? lane_dot<kPer>(ka, q + ih * Dk, Dk, L) : acc_t(0), L.gw);
    const acc_t dp = group_sum(work ? lane_dot<kPer>(va, grad_out + ih * Dv, Dv, L) : acc_t(0), L.gw);
    if (!work) continue;
    if (bias) s += static_cast<acc_t>(bias[perm[t_edge] * H + h]);
    const acc_t p = ::exp(s - lse_i);
    const acc_t ds = p * (dp - delta[ih]);
    axpy<kPer>(dv, p, grad_out + ih * Dv, Dv, L);
    axpy<kPer>(dk, ds, q + ih * Dk, Dk, L);
  }
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    dk[t] = across_groups_sum(dk[t], L.gw);
    dv[t] = across_groups_sum(dv[t], L.gw);
  }
  store_row<kPer>(grad_k + item * Dk, dk, Dk, L, scale);
  store_row<kPer>(grad_v + item * Dv, dv, Dv, L, acc_t(1));
}

// Lane layout for head dims Dk, Dv: fn(kPer) with kPer channels per lane, and the
// group width's log2 (a power of two >= max(Dk, Dv) when that is <= 32, else 32).
template <class Fn>
void dispatch_lanes(int64_t Dk, int64_t Dv, const Fn& fn) {
  const int64_t D = std::max(Dk, Dv);
  TORCH_CHECK_VALUE(D <= 128, "csr_attention on CUDA supports head dims up to 128, got dk = ", Dk, ", dv = ", Dv);
  if (D <= 32) {
    int gw_log2 = 0;
    while ((int64_t(1) << gw_log2) < D) ++gw_log2;
    fn(std::integral_constant<int, 1>{}, gw_log2);
  } else if (D <= 64) {
    fn(std::integral_constant<int, 2>{}, 5);
  } else {
    fn(std::integral_constant<int, 4>{}, 5);
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
      dispatch_lanes(a.dk, a.dv, [&](auto per, int gw_log2) {
        cuda::launch(forward_kernel<scalar_t, index_t, decltype(per)::value>, num_blocks(items), kWarps * 32, 0, stream,
            a.row_ptr.const_data_ptr<int64_t>(), a.col.const_data_ptr<index_t>(), a.q.const_data_ptr<scalar_t>(),
            a.k.const_data_ptr<scalar_t>(), a.v.const_data_ptr<scalar_t>(),
            a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr, a.num_rows, a.heads, a.dk, a.dv,
            static_cast<acc_t>(scale), gw_log2, out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>());
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
    dispatch_lanes(a.dk, a.dv, [&](auto per, int gw_log2) {
      constexpr int kPer = decltype(per)::value;
      const int64_t row_items = a.num_rows * a.heads, col_items = a.num_src * a.heads;
      if (row_items > 0) {
        AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention_backward", [&] {
          cuda::launch(backward_rows_kernel<scalar_t, index_t, kPer>, num_blocks(row_items), kWarps * 32, 0, stream,
              a.row_ptr.const_data_ptr<int64_t>(), a.col.const_data_ptr<index_t>(), a.q.const_data_ptr<scalar_t>(),
              a.k.const_data_ptr<scalar_t>(), a.v.const_data_ptr<scalar_t>(), bias_p,
              b.grad_out.const_data_ptr<scalar_t>(), b.lse.const_data_ptr<acc_t>(), b.delta.const_data_ptr<acc_t>(),
              a.num_rows, a.heads, a.dk, a.dv, static_cast<acc_t>(scale), gw_log2, grad_q.data_ptr<scalar_t>(),
              a.bias.defined() ? grad_bias.data_ptr<scalar_t>() : nullptr);
        });
      }
      if (col_items > 0) {
        cuda::launch(backward_cols_kernel<scalar_t, kPer>, num_blocks(col_items), kWarps * 32, 0, stream,
            b.row_ptr_t.const_data_ptr<int64_t>(), b.col_t.const_data_ptr<int64_t>(),
            b.perm.const_data_ptr<int64_t>(), a.q.const_data_ptr<scalar_t>(), a.k.const_data_ptr<scalar_t>(),
            a.v.const_data_ptr<scalar_t>(), bias_p, b.grad_out.const_data_ptr<scalar_t>(),
            b.lse.const_data_ptr<acc_t>(), b.delta.const_data_ptr<acc_t>(), a.num_src, a.heads, a.dk, a.dv,
            static_cast<acc_t>(scale), gw_log2, grad_k.data_ptr<scalar_t>(), grad_v.data_ptr<scalar_t>());
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
