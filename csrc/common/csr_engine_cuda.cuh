#pragma once
// CUDA engine for row-wise work over a CSR structure: the twin of
// csr_engine_cpu.h with the same reduce/map interface.
//
// Work is cut into items of at most kChunk edges (a row, or a piece of a long
// row); one warp handles one item. Lanes are split into `cg` channel lanes x
// `32 / cg` edge lanes so that narrow rows (C = 1 attention scores) still use
// the whole warp. Pieces of long rows write partial states that a second kernel
// merges, so a single huge segment is spread over the whole GPU.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <type_traits>

#include "common/cuda_launch.cuh"

namespace pyengine::cuda {

constexpr int64_t kChunk = 1024;
constexpr int kWarpsPerBlock = 8;

// Item decomposition of a CSR row pointer (built on the device with ATen ops).
struct WorkItems {
  int64_t num_rows = 0;
  int64_t num_items = 0;   // == num_rows when no row is longer than kChunk
  at::Tensor item_row;     // (num_items,) int64, undefined when items are rows
  at::Tensor item_chunk;   // (num_items,) int64, piece index within the row
  int64_t num_split = 0;   // rows cut into several pieces
  at::Tensor split_row, split_first, split_count;  // (num_split,) int64 each

  // Kernel arguments of decode_item: null when items are rows.
  const int64_t* row_data() const { return item_row.defined() ? item_row.const_data_ptr<int64_t>() : nullptr; }
  const int64_t* chunk_data() const { return item_chunk.defined() ? item_chunk.const_data_ptr<int64_t>() : nullptr; }
};
WorkItems make_work_items(const at::Tensor& row_ptr, int64_t num_edges);

template <typename T>
__device__ __forceinline__ T shfl_xor_any(const T& v, int offset) {
  static_assert(sizeof(T) % sizeof(int) == 0, "state must be a whole number of 32-bit words");
  T out;
  const int* src = reinterpret_cast<const int*>(&v);
  int* dst = reinterpret_cast<int*>(&out);
#pragma unroll
  for (int i = 0; i < int(sizeof(T) / sizeof(int)); ++i) dst[i] = __shfl_xor_sync(0xffffffffu, src[i], offset);
  return out;
}

struct ItemRange {
  int64_t row, beg, end, row_len;
};

__device__ __forceinline__ ItemRange decode_item(const int64_t* __restrict__ row_ptr,
                                                 const int64_t* __restrict__ item_row,
                                                 const int64_t* __restrict__ item_chunk, int64_t item) {
  ItemRange r;
  r.row = item_row ? item_row[item] : item;
  const int64_t rb = row_ptr[r.row], re = row_ptr[r.row + 1];
  r.row_len = re - rb;
  r.beg = item_row ? rb + item_chunk[item] * kChunk : rb;
  r.end = item_row ? min(r.beg + kChunk, re) : re;
  return r;
}

template <class Op, class Load, class Store>
__global__ void reduce_items_kernel(const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ item_row,
                                    const int64_t* __restrict__ item_chunk, int64_t num_items, int64_t C,
                                    int cg_log2, Load load, Store store, typename Op::State* __restrict__ partial) {
  using State = typename Op::State;
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= num_items) return;  // uniform across the warp
  const int lane = threadIdx.x & 31;
  const int cg = 1 << cg_log2, eg = 32 >> cg_log2;
  const int sub = lane >> cg_log2, cl = lane & (cg - 1);
  const ItemRange it = decode_item(row_ptr, item_row, item_chunk, item);
  const bool split = it.row_len > kChunk;
  for (int64_t c0 = 0; c0 < C; c0 += cg) {
    const int64_t c = c0 + cl;
    State s = Op::init();
    if (c < C) {
      // Four independent loads before the dependent folds keep more memory
      // requests in flight per warp (the reduction is bandwidth-bound).
      int64_t e = it.beg + sub;
      for (; e + 3 * eg < it.end; e += 4 * eg) {
        const auto v0 = load(e, c), v1 = load(e + eg, c), v2 = load(e + 2 * eg, c), v3 = load(e + 3 * eg, c);
        Op::push(s, v0, e);
        Op::push(s, v1, e + eg);
        Op::push(s, v2, e + 2 * eg);
        Op::push(s, v3, e + 3 * eg);
      }
      for (; e < it.end; e += eg) Op::push(s, load(e, c), e);
    }
    for (int off = cg; off < 32; off <<= 1) Op::merge(s, shfl_xor_any(s, off));
    if (sub == 0 && c < C) {
      if (split) {
        partial[item * C + c] = s;
      } else {
        store(it.row, c, s, it.row_len);
      }
    }
  }
}

template <class Op, class Store>
__global__ void merge_split_kernel(const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ split_row,
                                   const int64_t* __restrict__ split_first, const int64_t* __restrict__ split_count,
                                   int64_t C, const typename Op::State* __restrict__ partial, Store store) {
  using State = typename Op::State;
  __shared__ State smem[kWarpsPerBlock][32];
  const int64_t row = split_row[blockIdx.x];
  const int64_t first = split_first[blockIdx.x], count = split_count[blockIdx.x];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t c0 = 0; c0 < C; c0 += 32) {
    const int64_t c = c0 + lane;
    State s = Op::init();
    if (c < C) {
      for (int64_t j = warp; j < count; j += kWarpsPerBlock) Op::merge(s, partial[(first + j) * C + c]);
    }
    smem[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && c < C) {
      for (int w = 1; w < kWarpsPerBlock; ++w) Op::merge(s, smem[w][lane]);
      store(row, c, s, row_ptr[row + 1] - row_ptr[row]);
    }
    __syncthreads();
  }
}

template <class Map>
__global__ void map_items_kernel(const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ item_row,
                                 const int64_t* __restrict__ item_chunk, int64_t num_items, int64_t C, int cg_log2,
                                 Map fn) {
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (item >= num_items) return;
  const int lane = threadIdx.x & 31;
  const int cg = 1 << cg_log2, eg = 32 >> cg_log2;
  const int sub = lane >> cg_log2, cl = lane & (cg - 1);
  const ItemRange it = decode_item(row_ptr, item_row, item_chunk, item);
  for (int64_t c = cl; c < C; c += cg) {
#pragma unroll 4
    for (int64_t e = it.beg + sub; e < it.end; e += eg) fn(it.row, e, c, it.row_len);
  }
}

class CsrEngine {
 public:
  // row_ptr: contiguous int64 CUDA tensor, already validated.
  CsrEngine(const at::Tensor& row_ptr, int64_t num_edges)
      : row_ptr_(row_ptr.data_ptr<int64_t>()), guard_(row_ptr.device()), items_(make_work_items(row_ptr, num_edges)) {}

  template <class Op, class Load, class Store>
  void reduce(int64_t C, const Load& load, const Store& store) const {
    using State = typename Op::State;
    if (C == 0 || items_.num_items == 0) return;
    auto stream = c10::cuda::getCurrentCUDAStream();
    at::Tensor partial;
    State* partial_ptr = nullptr;
    if (items_.num_split > 0) {
      partial = at::empty({items_.num_items * C * int64_t(sizeof(State))},
                          items_.item_row.options().dtype(at::kByte));
      partial_ptr = reinterpret_cast<State*>(partial.data_ptr());
    }
    launch(reduce_items_kernel<Op, Load, Store>, grid(), kWarpsPerBlock * 32, 0, stream, row_ptr_, items_.row_data(),
           items_.chunk_data(), items_.num_items, C, channel_lanes_log2(C), load, store, partial_ptr);
    if (items_.num_split > 0) {
      launch(merge_split_kernel<Op, Store>, unsigned(items_.num_split), kWarpsPerBlock * 32, 0, stream, row_ptr_,
             items_.split_row.data_ptr<int64_t>(), items_.split_first.data_ptr<int64_t>(),
             items_.split_count.data_ptr<int64_t>(), C, const_cast<const State*>(partial_ptr), store);
    }
  }

  template <class Map>
  void map(int64_t C, const Map& fn) const {
    if (C == 0 || items_.num_items == 0) return;
    auto stream = c10::cuda::getCurrentCUDAStream();
    launch(map_items_kernel<Map>, grid(), kWarpsPerBlock * 32, 0, stream, row_ptr_, items_.row_data(),
           items_.chunk_data(), items_.num_items, C, channel_lanes_log2(C), fn);
  }

 private:
  static int channel_lanes_log2(int64_t C) {
    int l = 0;
    while (l < 5 && (int64_t(1) << l) < C) ++l;
    return l;
  }
  unsigned grid() const { return unsigned((items_.num_items + kWarpsPerBlock - 1) / kWarpsPerBlock); }

  const int64_t* row_ptr_;
  c10::cuda::CUDAGuard guard_;
  WorkItems items_;
};

}  // namespace pyengine::cuda
