#pragma once
// Row blocking shared by the CPU kernels with wide per-row state (attention, local).
//
// Blocks of consecutive rows of about equal cost (rows + edges: the merge-path
// split of common/csr_engine_cpu.h). These kernels keep per-row state wider than
// one channel (softmax state with Dv accumulators; B x C basis sums), which the
// engine's per-(edge, channel) load interface cannot express, so they walk rows
// themselves. Rows longer than a block's share of the edges are cut into pieces
// (RowSplit) that the kernels fold in parallel and merge afterwards, so one huge
// row does not serialise on one thread.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/csr_search.h"

namespace pyengine::cpu {

inline int64_t num_row_blocks(const int64_t* row_ptr, int64_t M) {
  const int64_t work = M + row_ptr[M];
  return std::max<int64_t>(1, std::min<int64_t>(int64_t(at::get_num_threads()) * 8, work / 1024 + 1));
}

// fn(r0, r1) over blocks of consecutive rows [r0, r1) with about equal rows + edges.
template <class Fn>
void for_row_blocks(const int64_t* row_ptr, int64_t M, const Fn& fn) {
  if (M == 0) return;
  const int64_t work = M + row_ptr[M];
  const int64_t blocks = num_row_blocks(row_ptr, M);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = merge_path(row_ptr, M, work * b / blocks);
      const int64_t r1 = merge_path(row_ptr, M, work * (b + 1) / blocks);
      if (r1 > r0) fn(r0, r1);
    }
  });
}

// The rows longer than `long_row` edges and their pieces of at most `long_row` edges.
// Kernels skip these rows in for_row_blocks and handle them piece by piece.
struct RowSplit {
  int64_t long_row = 0;
  std::vector<int64_t> rows;         // the long rows, ascending
  std::vector<int64_t> first_piece;  // pieces of rows[i]: first_piece[i] .. first_piece[i + 1]
  std::vector<int64_t> piece_row, piece_beg, piece_end;

  bool is_long(const int64_t* row_ptr, int64_t r) const { return row_ptr[r + 1] - row_ptr[r] > long_row; }
  int64_t num_pieces() const { return int64_t(piece_row.size()); }
};

// min_long_row: rows at most this long are never split (small pieces cost more to merge than they save).
inline RowSplit split_long_rows(const int64_t* row_ptr, int64_t M, int64_t min_long_row = 4096) {
  RowSplit s;
  if (M == 0) return s;
  s.long_row = std::max<int64_t>(row_ptr[M] / num_row_blocks(row_ptr, M) + 1, min_long_row);
  for (int64_t r = 0; r < M; ++r) {
    if (!s.is_long(row_ptr, r)) continue;
    s.rows.push_back(r);
    s.first_piece.push_back(s.num_pieces());
    for (int64_t b = row_ptr[r]; b < row_ptr[r + 1]; b += s.long_row) {
      s.piece_row.push_back(r);
      s.piece_beg.push_back(b);
      s.piece_end.push_back(std::min(row_ptr[r + 1], b + s.long_row));
    }
  }
  s.first_piece.push_back(s.num_pieces());
  return s;
}

// For every long row of `split`: the sum of its pieces' partial vectors (width
// entries each, in `partial`), handed to done(row, sum).
template <typename acc_t, class Done>
void sum_pieces(const RowSplit& split, int64_t width, std::vector<acc_t>& partial, const Done& done) {
  at::parallel_for(0, int64_t(split.rows.size()), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      acc_t* sum = partial.data() + split.first_piece[i] * width;
      for (int64_t p = split.first_piece[i] + 1; p < split.first_piece[i + 1]; ++p) {
        const acc_t* x = partial.data() + p * width;
        for (int64_t c = 0; c < width; ++c) sum[c] += x[c];
      }
      done(split.rows[i], sum);
    }
  });
}

}  // namespace pyengine::cpu
