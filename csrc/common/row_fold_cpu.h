#pragma once
// How the CPU engine folds one row (or piece of a row) into per-channel states.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "common/reducers.h"

namespace pyengine::cpu {

// Generic: Op::push in edge order, channel loop innermost so sums vectorise.
// A single channel has no channel loop to vectorise, so it folds the row into
// kLanes interleaved partial states (independent chains the CPU overlaps)
// merged at the end; Op::merge is associative, so only rounding order changes.
template <class Op>
struct RowFold {
  static constexpr int64_t kLanes = 8;

  template <class Load>
  static void run(int64_t beg, int64_t end, int64_t C, const Load& load, typename Op::State* st) {
    if (C == 1) {
      st[0] = fold_one_channel(beg, end, load);
      return;
    }
    for (int64_t c = 0; c < C; ++c) st[c] = Op::init();
    for (int64_t e = beg; e < end; ++e) {
      for (int64_t c = 0; c < C; ++c) Op::push(st[c], load(e, c), e);
    }
  }

 private:
  template <class Load>
  static typename Op::State fold_one_channel(int64_t beg, int64_t end, const Load& load) {
    typename Op::State lane[kLanes];
    for (int64_t k = 0; k < kLanes; ++k) lane[k] = Op::init();
    int64_t e = beg;
    for (; e + kLanes <= end; e += kLanes) {
      for (int64_t k = 0; k < kLanes; ++k) Op::push(lane[k], load(e + k, 0), e + k);
    }
    for (; e < end; ++e) Op::push(lane[0], load(e, 0), e);
    for (int64_t k = 1; k < kLanes; ++k) Op::merge(lane[0], lane[k]);
    return lane[0];
  }
};

// Max/min. The generic push (compare, then record value and edge) branches
// per element and does not vectorise. Here one branch-free pass keeps the
// running extremum and the offset of the edge holding it, with selects of equal
// width (float with int32 offsets, double with int64) so SIMD lanes line up.
// Same result as the sequential push: NaN wins, ties go to the lowest edge.
template <typename acc_t, bool kMax>
struct ExtremumFold {
  using State = typename ExtremumOp<acc_t, kMax>::State;
  static constexpr int64_t kTile = 64;  // channels per tile (stack arrays)

  template <class Load>
  static void run(int64_t beg, int64_t end, int64_t C, const Load& load, State* st) {
    if (sizeof(acc_t) == 4 && end - beg <= std::numeric_limits<int32_t>::max()) {
      fold<int32_t>(beg, end, C, load, st);
    } else {
      fold<int64_t>(beg, end, C, load, st);
    }
  }

 private:
  template <typename offset_t, class Load>
  static void fold(int64_t beg, int64_t end, int64_t C, const Load& load, State* st) {
    acc_t best[kTile];
    offset_t first[kTile];
    for (int64_t c0 = 0; c0 < C; c0 += kTile) {
      const int64_t n = std::min(kTile, C - c0);
      if (beg == end) {
        for (int64_t j = 0; j < n; ++j) st[c0 + j] = ExtremumOp<acc_t, kMax>::init();
        continue;
      }
      for (int64_t j = 0; j < n; ++j) {
        best[j] = load(beg, c0 + j);
        first[j] = 0;
      }
      for (int64_t e = beg + 1; e < end; ++e) {
        const offset_t offset = static_cast<offset_t>(e - beg);
        for (int64_t j = 0; j < n; ++j) {
          const acc_t x = load(e, c0 + j);
          const bool take = ((kMax ? x > best[j] : x < best[j]) || x != x) && best[j] == best[j];
          best[j] = take ? x : best[j];
          first[j] = take ? offset : first[j];
        }
      }
      for (int64_t j = 0; j < n; ++j) st[c0 + j] = {best[j], beg + static_cast<int64_t>(first[j])};
    }
  }
};

template <typename acc_t, bool kMax>
struct RowFold<ExtremumOp<acc_t, kMax>> : ExtremumFold<acc_t, kMax> {};

}  // namespace pyengine::cpu
