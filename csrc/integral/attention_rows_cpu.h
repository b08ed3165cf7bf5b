#pragma once
// Row blocking shared by the fused integral CPU kernels (attention, local).
//
// Blocks of consecutive rows of about equal cost (rows + edges: the merge-path
// split of common/csr_engine_cpu.h). These kernels keep per-row state wider than
// one channel (softmax state with Dv accumulators; B x C basis sums), which the
// engine's per-(edge, channel) load interface cannot express, so they walk rows
// themselves. A single huge row stays on one thread (no split-row merge).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace pyengine::integral_cpu {

// Smallest row r in [0, M] with r + row_ptr[r] >= target.
inline int64_t merge_path(const int64_t* row_ptr, int64_t M, int64_t target) {
  int64_t lo = 0, hi = M;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (mid + row_ptr[mid] < target) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// fn(r0, r1) over blocks of consecutive rows [r0, r1) with about equal rows + edges.
template <class Fn>
void for_row_blocks(const int64_t* row_ptr, int64_t M, const Fn& fn) {
  if (M == 0) return;
  const int64_t work = M + row_ptr[M];
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(int64_t(at::get_num_threads()) * 8, work / 1024 + 1));
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = merge_path(row_ptr, M, work * b / blocks);
      const int64_t r1 = merge_path(row_ptr, M, work * (b + 1) / blocks);
      if (r1 > r0) fn(r0, r1);
    }
  });
}

}  // namespace pyengine::integral_cpu
