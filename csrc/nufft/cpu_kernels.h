#pragma once
// Pieces shared by the CPU spreader and interpolator: the kernel values of one
// point in each dimension, the padded width W the inner loops run over, and
// wrapped (periodic) index runs.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nufft/es_kernel.h"
#include "nufft/nufft.h"

namespace pyengine::nufft::cpu {

// Kernel widths are rounded up to a multiple of 4 so the innermost loops have a
// compile-time trip count the compiler vectorises; the extra pieces are zero.
inline int padded_width(int w) { return (w + 3) / 4 * 4; }

// Per-call constants: Horner table in the compute precision, grid scales.
template <typename T, int W>
struct KernelSetup {
  std::vector<T> coeffs;  // nc * W, highest degree first
  int nc, w;
  T half_w;
  double scale[kMaxDim], n[kMaxDim];

  explicit KernelSetup(const SpreadArgs& a) : nc(horner_ncoeffs(a.width)), w(a.width), half_w(T(0.5 * a.width)) {
    const auto table = horner_table(a.width, a.beta, W);
    coeffs.assign(table.begin(), table.end());
    for (int i = 0; i < kMaxDim; ++i) {
      n[i] = double(a.grid[i]);
      scale[i] = n[i] / (2.0 * 3.14159265358979323846);
    }
  }

  // Kernel values ker[0..W) along dimension i for coordinate x; returns the first node i0.
  // The fold and offset are computed in double: in float, u near n = 2^20 would lose
  // the offset's low bits.
  int64_t eval(double x, int i, T* ker) const {
    const double u = fold_to_grid<double>(x, scale[i], n[i]);
    const double i0 = std::ceil(u - 0.5 * w);
    eval_kernel_horner<T, W>(T(i0 - u), half_w, coeffs.data(), nc, ker);
    return int64_t(i0);
  }
};

// Calls fn(global_start, local_start, length) for the runs of the periodic
// index range [lo, lo + len) on a grid of n nodes.
template <class Fn>
inline void for_each_wrapped_run(int64_t lo, int64_t len, int64_t n, const Fn& fn) {
  int64_t g = ((lo % n) + n) % n;
  for (int64_t t = 0; t < len;) {
    const int64_t run = std::min(len - t, n - g);
    fn(g, t, run);
    t += run;
    g = 0;
  }
}

}  // namespace pyengine::nufft::cpu
