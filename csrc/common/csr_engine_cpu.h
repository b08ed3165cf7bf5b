#pragma once
// CPU engine for row-wise work over a CSR structure (row_ptr of length M+1).
//
// Rows are grouped into blocks of balanced cost (rows + edges, a merge-path
// split), so skewed degree distributions still use every thread. Rows longer
// than a block are cut into pieces reduced in parallel and merged afterwards,
// so a single huge segment is not serialised on one thread.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/csr_search.h"
#include "common/row_fold_cpu.h"

namespace pyengine::cpu {

class CsrEngine {
 public:
  // row_ptr: contiguous int64 CPU tensor, already validated.
  CsrEngine(const at::Tensor& row_ptr, int64_t /*num_edges*/)
      : row_ptr_(row_ptr.data_ptr<int64_t>()), num_rows_(row_ptr.numel() - 1) {
    num_edges_ = row_ptr_[num_rows_];
    const int64_t work = num_rows_ + num_edges_;
    num_blocks_ = std::max<int64_t>(1, std::min<int64_t>(int64_t(at::get_num_threads()) * 8, work / 2048 + 1));
    long_row_ = std::max<int64_t>(num_edges_ / num_blocks_ + 1, 4096);
  }

  // For every row r and channel c < C: store(r, c, state, row_length), where
  // state folds load(e, c) over the row's edges e with Op.
  template <class Op, class Load, class Store>
  void reduce(int64_t C, const Load& load, const Store& store) const {
    if (C == 0 || num_rows_ == 0) return;
    // A compile-time single channel (scores, edge weights) drops the channel
    // loops, which otherwise dominate on short rows.
    std::vector<std::vector<int64_t>> long_rows(num_blocks_);
    if (C == 1) {
      reduce_blocks<Op, 1>(C, load, store, long_rows);
    } else {
      reduce_blocks<Op, 0>(C, load, store, long_rows);
    }
    reduce_long_rows<Op>(C, load, store, long_rows);
  }

  // For every edge e (in row r, of length len) and channel c < C: map(r, e, c, len).
  template <class Map>
  void map(int64_t C, const Map& fn) const {
    if (C == 0 || num_edges_ == 0) return;
    const int64_t grain = std::max<int64_t>(1, 16384 / C);
    at::parallel_for(0, num_edges_, grain, [&](int64_t e0, int64_t e1) {
      int64_t r = row_of_edge(row_ptr_, num_rows_, e0);
      for (int64_t e = e0; e < e1; ++e) {
        while (row_ptr_[r + 1] <= e) ++r;
        const int64_t len = row_ptr_[r + 1] - row_ptr_[r];
        for (int64_t c = 0; c < C; ++c) fn(r, e, c, len);
      }
    });
  }

 private:
  // Rows up to long_row_ edges, block by block; longer rows are listed per
  // block in long_rows for reduce_long_rows. kC > 0 fixes C at compile time.
  template <class Op, int64_t kC, class Load, class Store>
  void reduce_blocks(int64_t C_runtime, const Load& load, const Store& store,
                     std::vector<std::vector<int64_t>>& long_rows) const {
    using State = typename Op::State;
    const int64_t C = kC > 0 ? kC : C_runtime;
    const int64_t work = num_rows_ + num_edges_;
    at::parallel_for(0, num_blocks_, 1, [&](int64_t b0, int64_t b1) {
      std::vector<State> st(C);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = merge_path(work * b / num_blocks_);
        const int64_t r1 = merge_path(work * (b + 1) / num_blocks_);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t beg = row_ptr_[r], end = row_ptr_[r + 1];
          if (end - beg > long_row_) {
            long_rows[b].push_back(r);
            continue;
          }
          RowFold<Op>::run(beg, end, C, load, st.data());
          for (int64_t c = 0; c < C; ++c) store(r, c, st[c], end - beg);
        }
      }
    });
  }

  int64_t merge_path(int64_t target) const { return ::pyengine::merge_path(row_ptr_, num_rows_, target); }

  template <class Op, class Load, class Store>
  void reduce_long_rows(int64_t C, const Load& load, const Store& store,
                        const std::vector<std::vector<int64_t>>& long_rows) const {
    using State = typename Op::State;
    struct Piece {
      int64_t beg, end;
    };
    std::vector<int64_t> rows, first_piece;
    std::vector<Piece> pieces;
    for (const auto& block_rows : long_rows) {
      for (const int64_t r : block_rows) {
        const int64_t beg = row_ptr_[r], end = row_ptr_[r + 1];
        rows.push_back(r);
        first_piece.push_back(int64_t(pieces.size()));
        for (int64_t b = beg; b < end; b += long_row_) pieces.push_back({b, std::min(end, b + long_row_)});
      }
    }
    if (rows.empty()) return;
    first_piece.push_back(int64_t(pieces.size()));
    std::vector<State> partial(pieces.size() * C);
    at::parallel_for(0, int64_t(pieces.size()), 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) RowFold<Op>::run(pieces[p].beg, pieces[p].end, C, load, &partial[p * C]);
    });
    at::parallel_for(0, int64_t(rows.size()), 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t r = rows[i];
        for (int64_t c = 0; c < C; ++c) {
          State s = partial[first_piece[i] * C + c];
          for (int64_t p = first_piece[i] + 1; p < first_piece[i + 1]; ++p) Op::merge(s, partial[p * C + c]);
          store(r, c, s, row_ptr_[r + 1] - row_ptr_[r]);
        }
      }
    });
  }

  const int64_t* row_ptr_;
  int64_t num_rows_;
  int64_t num_edges_;
  int64_t num_blocks_;
  int64_t long_row_;
};

}  // namespace pyengine::cpu
