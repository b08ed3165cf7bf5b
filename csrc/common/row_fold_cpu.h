#pragma once
// How the CPU engine folds one row (or piece of a row) into per-channel states.
#include <algorithm>
#include <cstdint>

#include "common/reducers.h"

namespace pyengine::cpu {

// Generic: Op::push in edge order, channel loop innermost so sums vectorise.
template <class Op>
struct RowFold {
  template <class Load>
  static void run(int64_t beg, int64_t end, int64_t C, const Load& load, typename Op::State* st) {
    for (int64_t c = 0; c < C; ++c) st[c] = Op::init();
    for (int64_t e = beg; e < end; ++e) {
      for (int64_t c = 0; c < C; ++c) Op::push(st[c], load(e, c), e);
    }
  }
};

// Max/min. A branchy compare-and-record per element does not vectorise, so
// each span of kSpan edges (small enough to stay in cache) is folded in two
// branch-free passes: the extremum, then (kArg) the first edge holding it.
// Spans merge in order, strictly better wins. The result equals the
// sequential push: NaN wins, ties go to the lowest edge index.
template <typename acc_t, bool kMax, bool kArg>
struct ExtremumFold {
  using State = typename ExtremumOp<acc_t, kMax>::State;
  static constexpr int64_t kTile = 64;   // channels per tile (stack arrays)
  static constexpr int64_t kSpan = 256;  // edges per cache-resident span

  template <class Load>
  static void run(int64_t beg, int64_t end, int64_t C, const Load& load, State* st) {
    acc_t best[kTile], span_best[kTile];
    int64_t arg[kTile];
    int32_t first[kTile];  // 32-bit, the width of float, so the select vectorises
    for (int64_t c0 = 0; c0 < C; c0 += kTile) {
      const int64_t n = std::min(kTile, C - c0);
      if (beg == end) {
        for (int64_t j = 0; j < n; ++j) st[c0 + j] = ExtremumOp<acc_t, kMax>::init();
        continue;
      }
      for (int64_t s0 = beg; s0 < end; s0 += kSpan) {
        const int64_t s1 = std::min(end, s0 + kSpan);
        fold_span(s0, s1, c0, n, load, span_best, first);
        for (int64_t j = 0; j < n; ++j) {
          const bool take = s0 == beg || beats(span_best[j], best[j]);
          best[j] = take ? span_best[j] : best[j];
          arg[j] = take ? s0 + first[j] : arg[j];
        }
      }
      for (int64_t j = 0; j < n; ++j) st[c0 + j] = {best[j], arg[j]};
    }
  }

 private:
  // Does a later span's value replace the running one? Only if strictly better.
  static bool beats(acc_t later, acc_t running) {
    if (running != running) return false;
    return later != later || (kMax ? later > running : later < running);
  }

  template <class Load>
  static void fold_span(int64_t s0, int64_t s1, int64_t c0, int64_t n, const Load& load, acc_t* best,
                        int32_t* first) {
    for (int64_t j = 0; j < n; ++j) {
      best[j] = load(s0, c0 + j);
      first[j] = 0;
    }
    for (int64_t e = s0 + 1; e < s1; ++e) {
      for (int64_t j = 0; j < n; ++j) {
        const acc_t x = load(e, c0 + j);
        const bool better = (kMax ? x > best[j] : x < best[j]) || x != x;
        best[j] = better && best[j] == best[j] ? x : best[j];
      }
    }
    if (!kArg) return;  // the state's arg then marks the row non-empty only
    // Backwards, so the last hit written is the first edge holding the value.
    for (int64_t e = s1 - 1; e >= s0; --e) {
      const int32_t offset = static_cast<int32_t>(e - s0);
      for (int64_t j = 0; j < n; ++j) {
        const acc_t x = load(e, c0 + j);
        const bool hit = x == best[j] || (x != x && best[j] != best[j]);
        first[j] = hit ? offset : first[j];
      }
    }
  }
};

template <typename acc_t, bool kMax>
struct RowFold<ExtremumOp<acc_t, kMax>> : ExtremumFold<acc_t, kMax, true> {};
template <typename acc_t, bool kMax>
struct RowFold<ExtremumValueOp<acc_t, kMax>> : ExtremumFold<acc_t, kMax, false> {};

}  // namespace pyengine::cpu
