#pragma once
// The "exponential of semicircle" (ES) spreading kernel of the NUFFT,
//   phi(z) = exp(beta * (sqrt(1 - z^2) - 1))  for |z| <= 1, 0 outside,
// its piecewise-polynomial (Horner) form used by the spreaders, and its Fourier
// transform by Gauss-Legendre quadrature, used for deconvolution.
//
// Grid convention (shared by CPU and CUDA): a point at fine-grid coordinate u
// (u in [0, n)) touches the w grid nodes i0 + i, i = 0..w-1, with
// i0 = ceil(u - w/2). With x1 = i0 - u in [-w/2, -w/2 + 1), node i0 + i gets
// weight phi((x1 + i) / (w/2)). Writing t = 2 * (x1 + w/2) - 1 in [-1, 1),
// piece i is the smooth function t -> phi((t + 1 + 2i - w) / w), which we fit
// by one polynomial per piece (Chebyshev interpolation converted to monomials)
// and evaluate for all pieces at once by Horner's rule in t.
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/macros.h"

namespace pyengine::nufft {

constexpr int kMaxWidth = 16;   // widths above 16 buy nothing in double precision
constexpr int kMaxCoeffs = 20;  // polynomial degree + 1 per piece, at most

inline double es_kernel(double z, double beta) {
  if (std::fabs(z) >= 1.0) return 0.0;
  return std::exp(beta * (std::sqrt(1.0 - z * z) - 1.0));
}

// Number of Horner coefficients used for width w (degree = ncoeffs - 1).
inline int horner_ncoeffs(int w) { return w + 4 > kMaxCoeffs ? kMaxCoeffs : w + 4; }

// Monomial coefficients, highest degree first, of the W pieces (W >= w is the
// padded width the kernels loop over; pieces w..W-1 are identically zero):
// coeffs[d * W + i] multiplies t^(nc - 1 - d) in piece i.
inline std::vector<double> horner_table(int w, double beta, int W) {
  const int nc = horner_ncoeffs(w);
  std::vector<double> out(size_t(nc) * W, 0.0);
  std::vector<double> f(nc), cheb(nc), tk_prev(nc), tk(nc), tk_next(nc), mono(nc);
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < w; ++i) {
    // Chebyshev interpolation at the nc first-kind nodes.
    for (int m = 0; m < nc; ++m) {
      const double t = std::cos(pi * (m + 0.5) / nc);
      f[m] = es_kernel((t + 1.0 + 2.0 * i - w) / w, beta);
    }
    for (int j = 0; j < nc; ++j) {
      double s = 0.0;
      for (int m = 0; m < nc; ++m) s += f[m] * std::cos(pi * j * (m + 0.5) / nc);
      cheb[j] = s * 2.0 / nc;
    }
    cheb[0] *= 0.5;
    // Sum cheb[j] * T_j(t) in monomials, T_{j+1} = 2t T_j - T_{j-1}.
    std::fill(mono.begin(), mono.end(), 0.0);
    std::fill(tk_prev.begin(), tk_prev.end(), 0.0);
    std::fill(tk.begin(), tk.end(), 0.0);
    tk_prev[0] = 1.0;  // T_0
    if (nc > 1) tk[1] = 1.0;  // T_1
    for (int c = 0; c < nc; ++c) mono[c] += cheb[0] * tk_prev[c];
    for (int j = 1; j < nc; ++j) {
      for (int c = 0; c < nc; ++c) mono[c] += cheb[j] * tk[c];
      if (j + 1 < nc) {
        for (int c = 0; c < nc; ++c) tk_next[c] = (c > 0 ? 2.0 * tk[c - 1] : 0.0) - tk_prev[c];
        tk_prev = tk;
        tk = tk_next;
      }
    }
    for (int d = 0; d < nc; ++d) out[size_t(d) * W + i] = mono[nc - 1 - d];
  }
  return out;
}

// The W kernel values of a point whose offset is x1 = i0 - u, by Horner in t.
// coeffs: nc * W table from horner_table (converted to T).
template <typename T, int W>
PYE_HD void eval_kernel_horner(T x1, T half_w, const T* coeffs, int nc, T* ker) {
  const T t = T(2) * (x1 + half_w) - T(1);
#pragma unroll
  for (int i = 0; i < W; ++i) ker[i] = coeffs[i];
  for (int d = 1; d < nc; ++d) {
#pragma unroll
    for (int i = 0; i < W; ++i) ker[i] = ker[i] * t + coeffs[d * W + i];
  }
}

// Gauss-Legendre nodes and weights on [0, 1] (Newton on P_q from Chebyshev guesses).
inline void gauss_legendre_01(int q, std::vector<double>& x, std::vector<double>& wts) {
  const double pi = 3.14159265358979323846;
  x.resize(q);
  wts.resize(q);
  for (int i = 0; i < q; ++i) {
    double z = std::cos(pi * (i + 0.75) / (q + 0.5));
    double dp = 1.0;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1.0, p1 = z;
      for (int k = 2; k <= q; ++k) {
        const double p2 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = q * (z * p1 - p0) / (z * z - 1.0);
      const double dz = p1 / dp;
      z -= dz;
      if (std::fabs(dz) < 1e-16) break;
    }
    x[i] = 0.5 * (1.0 + z);
    wts[i] = 1.0 / ((1.0 - z * z) * dp * dp);  // = 0.5 * (2 / ((1 - z^2) P'^2)) on [0, 1]
  }
}

// Fourier transform of the kernel as seen on a fine grid of n nodes, at the
// integer frequencies k:  phihat(k) = int phi(2u / w) exp(-2 pi i k u / n) du
//                                   = w * int_0^1 phi(z) cos(pi k w z / n) dz.
inline void kernel_fourier(int w, double beta, int64_t n, const int64_t* k, int64_t count, double* out) {
  std::vector<double> z, wq;
  gauss_legendre_01(2 + 2 * w, z, wq);
  std::vector<double> phi(z.size());
  for (size_t q = 0; q < z.size(); ++q) phi[q] = wq[q] * es_kernel(z[q], beta);
  const double pi = 3.14159265358979323846;
  for (int64_t j = 0; j < count; ++j) {
    double s = 0.0;
    for (size_t q = 0; q < z.size(); ++q) s += phi[q] * std::cos(pi * double(k[j]) * w * z[q] / double(n));
    out[j] = w * s;
  }
}

}  // namespace pyengine::nufft
