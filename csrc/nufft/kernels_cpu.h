#pragma once
// Pieces shared by the CPU spreader and interpolator: the kernel values of one
// point in each dimension, the padded width W the inner loops run over, and
// wrapped (periodic) index runs.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "nufft/es_kernel.h"
#include "nufft/nufft.h"

namespace pyengine::nufft::cpu {

// Kernel widths are rounded up to a multiple of 4 so the innermost loops have a
// compile-time trip count the compiler vectorises; the extra pieces are zero.
inline int padded_width(int w) { return (w + 3) / 4 * 4; }

// The hot loops are compiled twice: for the baseline x86-64 the package is built
// for (SSE2), and with AVX2 + FMA, picked at run time. Bodies are always_inline
// functions instantiated inside the two wrappers, so each copy is vectorised for
// its own instruction set; the wrappers live in anonymous namespaces, so no AVX2
// code can be shared with (and run by) baseline callers.
#if defined(__GNUC__) && defined(__x86_64__)
#define PYE_NUFFT_AVX2 1
#define PYE_NUFFT_INLINE __attribute__((always_inline)) inline
#define PYE_NUFFT_TARGET_AVX2 __attribute__((target("avx2,fma")))
inline bool cpu_has_avx2() {
  // PYENGINE_NUFFT_NO_AVX2=1 forces the baseline code (for comparisons).
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("PYENGINE_NUFFT_NO_AVX2") == nullptr;
  return has;
}
#else
#define PYE_NUFFT_AVX2 0
#define PYE_NUFFT_INLINE inline
#define PYE_NUFFT_TARGET_AVX2
inline bool cpu_has_avx2() { return false; }
#endif

// Fixed-length vector arithmetic through GCC/Clang vector extensions, compiled to
// AVX2 registers in the AVX2 copies and to SSE2 ones in the baseline copies. (Plain
// loops over these short rows were fully unrolled but left scalar by the compiler.)
// A Vec of N values is K chunks of L lanes, L a power of two of at most VB bytes
// (32 for the AVX2 copies, 16 for the SSE2 baseline).
template <typename T, int N, int VB>
struct Vec {
  static constexpr int kLanes0 = int(VB / sizeof(T));
  static constexpr int L = (N & -N) < kLanes0 ? (N & -N) : kLanes0;
  static constexpr int K = N / L;
  typedef T chunk __attribute__((vector_size(L * sizeof(T))));
  // The same for unaligned memory: loads and stores become single vmovups.
  typedef T uchunk __attribute__((vector_size(L * sizeof(T)), aligned(sizeof(T)), may_alias));
  chunk v[K];
};

template <typename T, int N, int VB>
PYE_NUFFT_INLINE Vec<T, N, VB> vload(const T* p) {
  using V = Vec<T, N, VB>;
  V r;
  for (int k = 0; k < V::K; ++k) r.v[k] = *reinterpret_cast<const typename V::uchunk*>(p + k * V::L);
  return r;
}
template <typename T, int N, int VB>
PYE_NUFFT_INLINE void vstore(T* p, const Vec<T, N, VB>& x) {
  using V = Vec<T, N, VB>;
  for (int k = 0; k < V::K; ++k) *reinterpret_cast<typename V::uchunk*>(p + k * V::L) = x.v[k];
}
template <typename T, int N, int VB>
PYE_NUFFT_INLINE Vec<T, N, VB> vzero() {
  Vec<T, N, VB> r;
  for (int k = 0; k < Vec<T, N, VB>::K; ++k) r.v[k] = typename Vec<T, N, VB>::chunk{};
  return r;
}
// acc += a * x
template <typename T, int N, int VB>
PYE_NUFFT_INLINE void vfma(Vec<T, N, VB>& acc, T a, const Vec<T, N, VB>& x) {
  for (int k = 0; k < Vec<T, N, VB>::K; ++k) acc.v[k] += a * x.v[k];
}
// x = x * t + c
template <typename T, int N, int VB>
PYE_NUFFT_INLINE void vhorner(Vec<T, N, VB>& x, T t, const Vec<T, N, VB>& c) {
  for (int k = 0; k < Vec<T, N, VB>::K; ++k) x.v[k] = x.v[k] * t + c.v[k];
}
// y[0..N) += a * x[0..N)
template <typename T, int N, int VB>
PYE_NUFFT_INLINE void axpy(T* y, T a, const Vec<T, N, VB>& x) {
  Vec<T, N, VB> r = vload<T, N, VB>(y);
  vfma<T, N, VB>(r, a, x);
  vstore<T, N, VB>(y, r);
}

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
  template <int VB>
  PYE_NUFFT_INLINE int64_t eval(double x, int i, T* ker) const {
    const double u = fold_to_grid<double>(x, scale[i], n[i]);
    const double i0 = std::ceil(u - 0.5 * w);
    // Horner in t for all W pieces at once (see es_kernel.h), on vector registers.
    const T t = T(2) * (T(i0 - u) + half_w) - T(1);
    const T* c = coeffs.data();
    Vec<T, W, VB> k = vload<T, W, VB>(c);
    for (int d = 1; d < nc; ++d) vhorner<T, W, VB>(k, t, vload<T, W, VB>(c + d * W));
    vstore<T, W, VB>(ker, k);
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
