#include "common/csr_engine_cuda.cuh"
#include "common/expand_rows.h"

namespace pyengine::cuda {

WorkItems make_work_items(const at::Tensor& row_ptr, int64_t num_edges) {
  c10::cuda::CUDAGuard guard(row_ptr.device());
  WorkItems w;
  w.num_rows = row_ptr.numel() - 1;
  w.num_items = w.num_rows;
  if (num_edges <= kChunk || w.num_rows == 0) return w;  // no row can be longer than a chunk
  const auto lens = row_ptr.narrow(0, 1, w.num_rows) - row_ptr.narrow(0, 0, w.num_rows);
  if (lens.max().item<int64_t>() <= kChunk) return w;
  const auto pieces = (lens + (kChunk - 1)).div(kChunk, "floor").clamp_min(1);
  const auto ends = pieces.cumsum(0);
  const auto starts = ends - pieces;
  w.num_items = ends[-1].item<int64_t>();
  w.item_row = expand_rows(pieces, w.num_items);
  w.item_chunk = at::arange(w.num_items, row_ptr.options()) - starts.index_select(0, w.item_row);
  w.split_row = at::nonzero(pieces.gt(1)).flatten();
  w.split_first = starts.index_select(0, w.split_row);
  w.split_count = pieces.index_select(0, w.split_row);
  w.num_split = w.split_row.numel();
  return w;
}

}  // namespace pyengine::cuda
