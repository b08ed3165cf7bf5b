#pragma once
// Finding the row of a CSR edge, host and device.
#include <cstdint>

#include "common/macros.h"

namespace pyengine {

// The row of edge e < row_ptr[num_rows], i.e. the largest r with row_ptr[r] <= e,
// searched upwards from a row `lo` known to start at or before e (galloping, then
// bisection): the cost grows with the log of the distance from `lo`, whatever the
// number of empty rows in between, and is a plain binary search from lo = 0.
PYE_HD int64_t row_of_edge(const int64_t* row_ptr, int64_t num_rows, int64_t e, int64_t lo = 0) {
  int64_t hi = num_rows;  // row_ptr[num_rows] = E > e
  for (int64_t step = 1;; step *= 2) {
    const int64_t next = lo + step;
    if (next >= num_rows) break;
    if (row_ptr[next] > e) {
      hi = next;
      break;
    }
    lo = next;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (row_ptr[mid] <= e) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Smallest row r in [0, num_rows] with r + row_ptr[r] >= target: the merge-path
// split that cuts rows + edges into blocks of equal cost (target in [0, num_rows + E]).
PYE_HD int64_t merge_path(const int64_t* row_ptr, int64_t num_rows, int64_t target) {
  int64_t lo = 0, hi = num_rows;
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

}  // namespace pyengine
