// CUDA kernels of the fused CSR attention (see attention.h for the math).
//
// Work items: a row, or a piece of at most cuda::kChunk edges of a longer row
// (cuda::make_work_items, the decomposition the CSR engine uses), so a huge row
// (or, in backward, a huge column) is spread over many warps instead of
// serialising on one. One warp per (item, head).
//
// Within a warp, lanes form groups of `gw` lanes (gw = the head dim rounded up
// to a power of two, at most 32); each group takes every (32 / gw)-th edge of
// the item, so short heads (D = 8, 16) still use all lanes. A lane holds kPer
// channels (cl + gw * t) of q and of its running accumulators; a score is a
// shuffle-sum within the group; each group keeps its own online-softmax state
// (max, sum, Dv accumulators) in registers, and the groups' states are merged by
// shuffles at the end. Nothing per edge is written to global memory.
//
// Forward (flash-decoding style): a warp whose item is a whole row writes out
// and lse directly, as a single pass. A warp on a piece of a split row writes
// its unnormalised state (m, l, acc[Dv]) to a scratch slot instead, and
// merge_forward_kernel (one warp per (split row, head)) folds the row's pieces
// and writes out and lse.
//
// Backward recomputes the probabilities from the saved log-sum-exp: a pass over
// the rows' items for grad_q / grad_bias, and a pass over the items of the
// transposed CSR (source points, long columns cut the same way) for grad_k /
// grad_v. grad_bias is per edge, so pieces write it directly; grad_q, grad_k and
// grad_v of a split row / column are sums over its pieces, which write partial
// sums that merge_sum_kernel adds up. Gathers only, no float atomics, and every
// merge runs in a fixed order (piece j in group j mod groups, then a fixed
// butterfly over the groups), so results are deterministic. float16/bfloat16
// accumulate (and keep their partial states) in float.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "common/csr_engine_cuda.cuh"
#include "common/cuda_launch.cuh"
#include "common/dispatch.h"
#include "attention/attention.h"

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

__device__ __forceinline__ int64_t warp_index() { return (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; }

// What the warp with index wh = item * H + h works on: head h of the edges
// [beg, end) of `row` (a row of the CSR, or a source point of the transposed
// one). `split` marks a piece of a row longer than kChunk: its results go to the
// scratch slot wh, to be merged, instead of to the outputs.
struct WarpTask {
  int64_t row, h, beg, end;
  bool split;
};

__device__ __forceinline__ WarpTask warp_task(const int64_t* __restrict__ row_ptr,
                                              const int64_t* __restrict__ item_row,
                                              const int64_t* __restrict__ item_chunk, int64_t wh, int64_t H) {
  const int64_t item = wh / H;
  const cuda::ItemRange it = cuda::decode_item(row_ptr, item_row, item_chunk, item);
  // item_row is null when no row is longer than kChunk: then items are rows and nothing is split.
  return {it.row, wh - item * H, it.beg, it.end, it.row_len > cuda::kChunk};
}

// What the warp with index wh = s * H + h of a merge kernel folds: head h of the
// pieces first .. first + count - 1 (scratch items) of split row number s, `row`.
struct SplitTask {
  int64_t row, h, first, count;
};

__device__ __forceinline__ SplitTask split_task(const int64_t* __restrict__ split_row,
                                                const int64_t* __restrict__ split_first,
                                                const int64_t* __restrict__ split_count, int64_t wh, int64_t H) {
  const int64_t s = wh / H;
  return {split_row[s], wh - s * H, split_first[s], split_count[s]};
}

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

// (m, l, acc) <- merged with (m2, l2, acc2) (merge_softmax_scales, attention.h).
template <int kPer, typename acc_t>
__device__ __forceinline__ void merge_state(acc_t& m, acc_t& l, acc_t (&acc)[kPer], acc_t m2, acc_t l2,
                                            const acc_t (&acc2)[kPer]) {
  acc_t f1, f2;
  if (!merge_softmax_scales(m, l, m2, l2, f1, f2)) return;
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = acc[t] * f1 + acc2[t] * f2;
}

// Merges the groups' states; afterwards every group holds the warp's state.
template <int kPer, typename acc_t>
__device__ __forceinline__ void merge_groups(acc_t& m, acc_t& l, acc_t (&acc)[kPer], const Lanes& L) {
  for (int off = L.gw; off < 32; off <<= 1) {
    const acc_t m2 = __shfl_xor_sync(0xffffffffu, m, off);
    const acc_t l2 = __shfl_xor_sync(0xffffffffu, l, off);
    acc_t acc2[kPer];
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc2[t] = __shfl_xor_sync(0xffffffffu, acc[t], off);
    merge_state<kPer>(m, l, acc, m2, l2, acc2);
  }
}

// out = acc / l and lse = m + log(l) of one (row, head); zeros and -inf when nothing was summed.
template <int kPer, typename acc_t, typename scalar_t>
__device__ __forceinline__ void finish_row(scalar_t* __restrict__ out_row, acc_t* __restrict__ lse_at, acc_t m,
                                           acc_t l, const acc_t (&acc)[kPer], int64_t Dv, const Lanes& L) {
  const bool empty = l == acc_t(0);
  store_row<kPer>(out_row, acc, Dv, L, empty ? acc_t(0) : acc_t(1) / l);
  if (L.lane == 0) *lse_at = empty ? neg_inf<acc_t>() : m + ::log(l);
}

// One warp per (item, head). Pieces of split rows write their state to
// part_ml[wh] = (m, l) and part_acc[wh, :Dv]; whole rows write out and lse.
template <typename scalar_t, typename index_t, int kPer>
__global__ void forward_kernel(const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ item_row,
                               const int64_t* __restrict__ item_chunk, int64_t num_items,
                               const index_t* __restrict__ col, const scalar_t* __restrict__ q,
                               const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                               const scalar_t* __restrict__ bias, int64_t H, int64_t Dk, int64_t Dv,
                               at::opmath_type<scalar_t> scale, int gw_log2, scalar_t* __restrict__ out,
                               at::opmath_type<scalar_t>* __restrict__ lse,
                               at::opmath_type<scalar_t>* __restrict__ part_ml,
                               at::opmath_type<scalar_t>* __restrict__ part_acc) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t wh = warp_index();
  if (wh >= num_items * H) return;  // uniform across the warp
  const Lanes L(gw_log2);
  const WarpTask w = warp_task(row_ptr, item_row, item_chunk, wh, H);
  const int64_t h = w.h, rh = w.row * H + h;
  acc_t qa[kPer], acc[kPer];
  load_row<kPer>(qa, q + rh * Dk, Dk, L, scale);
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0;
  acc_t m = neg_inf<acc_t>(), l = 0;
  // Every lane runs the same number of iterations (the shuffles need the whole warp).
  for (int64_t base = w.beg; base < w.end; base += L.groups) {
    const int64_t e = base + L.group;
    const bool valid = e < w.end;
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
  merge_groups<kPer>(m, l, acc, L);
  if (!w.split) {
    finish_row<kPer>(out + rh * Dv, lse + rh, m, l, acc, Dv, L);
    return;
  }
  store_row<kPer>(part_acc + wh * Dv, acc, Dv, L, acc_t(1));
  if (L.lane == 0) {
    part_ml[2 * wh] = m;
    part_ml[2 * wh + 1] = l;
  }
}

// One warp per (split row, head): folds the states of the row's pieces (group g
// takes pieces g, g + groups, ... in order, then the groups merge by a fixed
// butterfly) and writes out and lse.
template <typename scalar_t, int kPer>
__global__ void merge_forward_kernel(const int64_t* __restrict__ split_row, const int64_t* __restrict__ split_first,
                                     const int64_t* __restrict__ split_count, int64_t num_split, int64_t H,
                                     int64_t Dv, int gw_log2, const at::opmath_type<scalar_t>* __restrict__ part_ml,
                                     const at::opmath_type<scalar_t>* __restrict__ part_acc,
                                     scalar_t* __restrict__ out, at::opmath_type<scalar_t>* __restrict__ lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t wh = warp_index();
  if (wh >= num_split * H) return;
  const Lanes L(gw_log2);
  const SplitTask w = split_task(split_row, split_first, split_count, wh, H);
  acc_t m = neg_inf<acc_t>(), l = 0, acc[kPer];
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0;
  for (int64_t j = L.group; j < w.count; j += L.groups) {
    const int64_t slot = (w.first + j) * H + w.h;
    acc_t acc2[kPer];
    load_row<kPer>(acc2, part_acc + slot * Dv, Dv, L, acc_t(1));
    merge_state<kPer>(m, l, acc, part_ml[2 * slot], part_ml[2 * slot + 1], acc2);
  }
  merge_groups<kPer>(m, l, acc, L);
  const int64_t rh = w.row * H + w.h;
  finish_row<kPer>(out + rh * Dv, lse + rh, m, l, acc, Dv, L);
}

// Row pass of backward, one warp per (item, head): grad_bias of the item's
// edges, and grad_q (to part_dq[wh, :Dk], unscaled, for a piece of a split row).
template <typename scalar_t, typename index_t, int kPer>
__global__ void backward_rows_kernel(const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ item_row,
                                     const int64_t* __restrict__ item_chunk, int64_t num_items,
                                     const index_t* __restrict__ col, const scalar_t* __restrict__ q,
                                     const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
                                     const scalar_t* __restrict__ bias, const scalar_t* __restrict__ grad_out,
                                     const at::opmath_type<scalar_t>* __restrict__ lse,
                                     const at::opmath_type<scalar_t>* __restrict__ delta, int64_t H, int64_t Dk,
                                     int64_t Dv, at::opmath_type<scalar_t> scale, int gw_log2,
                                     scalar_t* __restrict__ grad_q, scalar_t* __restrict__ grad_bias,
                                     at::opmath_type<scalar_t>* __restrict__ part_dq) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t wh = warp_index();
  if (wh >= num_items * H) return;
  const Lanes L(gw_log2);
  const WarpTask w = warp_task(row_ptr, item_row, item_chunk, wh, H);
  const int64_t h = w.h, rh = w.row * H + h;
  const acc_t lse_r = lse[rh], dl = delta[rh];
  const bool live = lse_r != neg_inf<acc_t>();  // else every probability is 0
  acc_t qa[kPer], ga[kPer], dq[kPer];
  load_row<kPer>(qa, q + rh * Dk, Dk, L, scale);
  load_row<kPer>(ga, grad_out + rh * Dv, Dv, L, acc_t(1));
#pragma unroll
  for (int t = 0; t < kPer; ++t) dq[t] = 0;
  for (int64_t base = w.beg; base < w.end; base += L.groups) {
    const int64_t e = base + L.group;
    const bool valid = e < w.end;
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
  if (w.split) {
    store_row<kPer>(part_dq + wh * Dk, dq, Dk, L, acc_t(1));
  } else {
    store_row<kPer>(grad_q + rh * Dk, dq, Dk, L, scale);
  }
}

// Column pass of backward over the transposed CSR, one warp per (item, head)
// where items are source points or pieces of long columns: grad_k (unscaled)
// and grad_v, to part_dk[wh, :Dk] and part_dv[wh, :Dv] for a piece.
template <typename scalar_t, int kPer>
__global__ void backward_cols_kernel(const int64_t* __restrict__ row_ptr_t, const int64_t* __restrict__ item_row,
                                     const int64_t* __restrict__ item_chunk, int64_t num_items,
                                     const int64_t* __restrict__ rows, const int64_t* __restrict__ perm,
                                     const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                                     const scalar_t* __restrict__ v, const scalar_t* __restrict__ bias,
                                     const scalar_t* __restrict__ grad_out,
                                     const at::opmath_type<scalar_t>* __restrict__ lse,
                                     const at::opmath_type<scalar_t>* __restrict__ delta, int64_t H, int64_t Dk,
                                     int64_t Dv, at::opmath_type<scalar_t> scale, int gw_log2,
                                     scalar_t* __restrict__ grad_k, scalar_t* __restrict__ grad_v,
                                     at::opmath_type<scalar_t>* __restrict__ part_dk,
                                     at::opmath_type<scalar_t>* __restrict__ part_dv) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t wh = warp_index();
  if (wh >= num_items * H) return;
  const Lanes L(gw_log2);
  const WarpTask w = warp_task(row_ptr_t, item_row, item_chunk, wh, H);
  const int64_t h = w.h, jh = w.row * H + h;
  acc_t ka[kPer], va[kPer], dk[kPer], dv[kPer];
  load_row<kPer>(ka, k + jh * Dk, Dk, L, scale);
  load_row<kPer>(va, v + jh * Dv, Dv, L, acc_t(1));
#pragma unroll
  for (int t = 0; t < kPer; ++t) dk[t] = dv[t] = 0;
  for (int64_t base = w.beg; base < w.end; base += L.groups) {
    const int64_t t_edge = base + L.group;
    const int64_t ih = t_edge < w.end ? rows[t_edge] * H + h : 0;
    const acc_t lse_i = t_edge < w.end ? lse[ih] : neg_inf<acc_t>();
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
  if (w.split) {
    store_row<kPer>(part_dk + wh * Dk, dk, Dk, L, acc_t(1));
    store_row<kPer>(part_dv + wh * Dv, dv, Dv, L, acc_t(1));
  } else {
    store_row<kPer>(grad_k + jh * Dk, dk, Dk, L, scale);
    store_row<kPer>(grad_v + jh * Dv, dv, Dv, L, acc_t(1));
  }
}

// One warp per (split row, head): out[row, h, :D] = mult * (sum of the row's
// pieces' part[slot, :D]), in a fixed order (group g adds pieces g, g + groups,
// ..., then a fixed butterfly over the groups).
template <typename scalar_t, int kPer>
__global__ void merge_sum_kernel(const int64_t* __restrict__ split_row, const int64_t* __restrict__ split_first,
                                 const int64_t* __restrict__ split_count, int64_t num_split, int64_t H, int64_t D,
                                 int gw_log2, const at::opmath_type<scalar_t>* __restrict__ part,
                                 at::opmath_type<scalar_t> mult, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t wh = warp_index();
  if (wh >= num_split * H) return;
  const Lanes L(gw_log2);
  const SplitTask w = split_task(split_row, split_first, split_count, wh, H);
  acc_t sum[kPer];
#pragma unroll
  for (int t = 0; t < kPer; ++t) sum[t] = 0;
  for (int64_t j = L.group; j < w.count; j += L.groups) {
    axpy<kPer>(sum, acc_t(1), part + ((w.first + j) * H + w.h) * D, D, L);
  }
#pragma unroll
  for (int t = 0; t < kPer; ++t) sum[t] = across_groups_sum(sum[t], L.gw);
  store_row<kPer>(out + (w.row * H + w.h) * D, sum, D, L, mult);
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

unsigned num_blocks(int64_t warps) {
  const int64_t blocks = (warps + kWarps - 1) / kWarps;
  TORCH_CHECK_VALUE(blocks <= int64_t(std::numeric_limits<int32_t>::max()), "csr_attention: too many rows x heads (",
                    warps, ") for one launch");
  return unsigned(std::max<int64_t>(blocks, 1));
}

// Work items of one CSR, and scratch space for the pieces of its split rows.
struct Items {
  cuda::WorkItems w;
  Items(const at::Tensor& row_ptr, int64_t num_edges) : w(cuda::make_work_items(row_ptr, num_edges)) {}
  // Partial results of `width` accumulators per (item, head); only pieces of split
  // rows write theirs, and nothing is allocated when no row is split.
  at::Tensor scratch(int64_t H, int64_t width, const at::TensorOptions& acc) const {
    return w.num_split > 0 ? at::empty({w.num_items * H, width}, acc) : at::Tensor();
  }
};

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// out[split row, h, :D] = mult * sum over the row's pieces of part (see merge_sum_kernel).
template <typename scalar_t, int kPer>
void merge_sums(const Items& it, int64_t H, int64_t D, int gw_log2, const at::Tensor& part,
                at::opmath_type<scalar_t> mult, at::Tensor& out, cudaStream_t stream) {
  if (it.w.num_split == 0) return;
  cuda::launch(merge_sum_kernel<scalar_t, kPer>, num_blocks(it.w.num_split * H), kWarps * 32, 0, stream,
               it.w.split_row.const_data_ptr<int64_t>(), it.w.split_first.const_data_ptr<int64_t>(),
               it.w.split_count.const_data_ptr<int64_t>(), it.w.num_split, H, D, gw_log2,
               part.const_data_ptr<at::opmath_type<scalar_t>>(), mult, out.data_ptr<scalar_t>());
}

}  // namespace
std::tuple<at::Tensor, at::Tensor> csr_attention_cuda(const at::Tensor& row_ptr, const at::Tensor& col,
                                                      const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                      const std::optional<at::Tensor>& bias, double scale) {
  const AttentionArgs a = check_attention_args(row_ptr, col, q, k, v, bias, scale);
  c10::cuda::CUDAGuard guard(a.q.device());
  const auto acc_opts = a.q.options().dtype(acc_dtype(a.q.scalar_type()));
  auto out = at::empty({a.num_rows, a.heads, a.dv}, a.q.options());
  auto lse = at::empty({a.num_rows, a.heads}, acc_opts);
  if (a.num_rows * a.heads == 0) return {out, lse};
  const Items it(a.row_ptr, a.num_edges);
  const int64_t H = a.heads;
  at::Tensor part_ml = it.scratch(H, 2, acc_opts), part_acc = it.scratch(H, a.dv, acc_opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  PYE_DISPATCH_FLOATING(a.q.scalar_type(), "csr_attention", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_lanes(a.dk, a.dv, [&](auto per, int gw_log2) {
      constexpr int kPer = decltype(per)::value;
      AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention", [&] {
        cuda::launch(forward_kernel<scalar_t, index_t, kPer>, num_blocks(it.w.num_items * H), kWarps * 32, 0, stream,
            a.row_ptr.const_data_ptr<int64_t>(), it.w.row_data(), it.w.chunk_data(), it.w.num_items,
            a.col.const_data_ptr<index_t>(), a.q.const_data_ptr<scalar_t>(), a.k.const_data_ptr<scalar_t>(),
            a.v.const_data_ptr<scalar_t>(), a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr, H, a.dk,
            a.dv, static_cast<acc_t>(scale), gw_log2, out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>(),
            ptr_or_null<acc_t>(part_ml), ptr_or_null<acc_t>(part_acc));
      });
      if (it.w.num_split > 0) {
        cuda::launch(merge_forward_kernel<scalar_t, kPer>, num_blocks(it.w.num_split * H), kWarps * 32, 0, stream,
            it.w.split_row.const_data_ptr<int64_t>(), it.w.split_first.const_data_ptr<int64_t>(),
            it.w.split_count.const_data_ptr<int64_t>(), it.w.num_split, H, a.dv, gw_log2,
            part_ml.const_data_ptr<acc_t>(), part_acc.const_data_ptr<acc_t>(), out.data_ptr<scalar_t>(),
            lse.data_ptr<acc_t>());
      }
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
  const int64_t H = a.heads;
  if (H == 0) return {grad_q, grad_k, grad_v, grad_bias};
  const auto acc_opts = a.q.options().dtype(acc_dtype(a.q.scalar_type()));
  auto stream = c10::cuda::getCurrentCUDAStream();
  PYE_DISPATCH_FLOATING(a.q.scalar_type(), "csr_attention_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* bias_p = a.bias.defined() ? a.bias.const_data_ptr<scalar_t>() : nullptr;
    dispatch_lanes(a.dk, a.dv, [&](auto per, int gw_log2) {
      constexpr int kPer = decltype(per)::value;
      if (a.num_rows > 0) {
        const Items it(a.row_ptr, a.num_edges);
        const at::Tensor part_dq = it.scratch(H, a.dk, acc_opts);
        AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "csr_attention_backward", [&] {
          cuda::launch(backward_rows_kernel<scalar_t, index_t, kPer>, num_blocks(it.w.num_items * H), kWarps * 32, 0,
              stream, a.row_ptr.const_data_ptr<int64_t>(), it.w.row_data(), it.w.chunk_data(), it.w.num_items,
              a.col.const_data_ptr<index_t>(), a.q.const_data_ptr<scalar_t>(), a.k.const_data_ptr<scalar_t>(),
              a.v.const_data_ptr<scalar_t>(), bias_p, b.grad_out.const_data_ptr<scalar_t>(),
              b.lse.const_data_ptr<acc_t>(), b.delta.const_data_ptr<acc_t>(), H, a.dk, a.dv,
              static_cast<acc_t>(scale), gw_log2, grad_q.data_ptr<scalar_t>(),
              a.bias.defined() ? grad_bias.data_ptr<scalar_t>() : nullptr, ptr_or_null<acc_t>(part_dq));
        });
        merge_sums<scalar_t, kPer>(it, H, a.dk, gw_log2, part_dq, static_cast<acc_t>(scale), grad_q, stream);
      }
      if (a.num_src > 0) {
        const Items it(b.row_ptr_t, a.num_edges);  // long columns are cut like long rows
        const at::Tensor part_dk = it.scratch(H, a.dk, acc_opts), part_dv = it.scratch(H, a.dv, acc_opts);
        cuda::launch(backward_cols_kernel<scalar_t, kPer>, num_blocks(it.w.num_items * H), kWarps * 32, 0, stream,
            b.row_ptr_t.const_data_ptr<int64_t>(), it.w.row_data(), it.w.chunk_data(), it.w.num_items,
            b.col_t.const_data_ptr<int64_t>(), b.perm.const_data_ptr<int64_t>(), a.q.const_data_ptr<scalar_t>(),
            a.k.const_data_ptr<scalar_t>(), a.v.const_data_ptr<scalar_t>(), bias_p,
            b.grad_out.const_data_ptr<scalar_t>(), b.lse.const_data_ptr<acc_t>(), b.delta.const_data_ptr<acc_t>(),
            H, a.dk, a.dv, static_cast<acc_t>(scale), gw_log2, grad_k.data_ptr<scalar_t>(),
            grad_v.data_ptr<scalar_t>(), ptr_or_null<acc_t>(part_dk), ptr_or_null<acc_t>(part_dv));
        merge_sums<scalar_t, kPer>(it, H, a.dk, gw_log2, part_dk, static_cast<acc_t>(scale), grad_k, stream);
        merge_sums<scalar_t, kPer>(it, H, a.dv, gw_log2, part_dv, acc_t(1), grad_v, stream);
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
