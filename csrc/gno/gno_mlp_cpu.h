#pragma once
// The per-edge kernel MLP of the fused GNO integral, evaluated on a chunk of n
// edges at a time (CPU). A chunk is small enough (a few hundred edges) that its
// activations stay in cache; the layers run as small BLAS GEMMs over the chunk
// and the activations through ATen's vectorised CPU kernels (at::cpu::*, no
// dispatcher round trip), so the exact-erf GELU matches torch bit for bit.
#include <ATen/ATen.h>
#include <ATen/CPUFunctions.h>

#include <algorithm>
#include <cstdint>

#include "gno/gno.h"

// Fortran BLAS exported by libtorch_cpu (MKL on x86 wheels, LP64 integers);
// the same symbols ATen's own cpublas::gemm calls.
extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
}

namespace pyengine::gno::cpu {

// Column-major BLAS call.
inline void blas_gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float beta, float* c, int64_t ldc) {
  const int mi = int(m), ni = int(n), ki = int(k), la = int(lda), lb = int(ldb), lc = int(ldc);
  const float one = 1.f;
  sgemm_(&ta, &tb, &mi, &ni, &ki, &one, a, &la, b, &lb, &beta, c, &lc);
}
inline void blas_gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
                      const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  const int mi = int(m), ni = int(n), ki = int(k), la = int(lda), lb = int(ldb), lc = int(ldc);
  const double one = 1.0;
  dgemm_(&ta, &tb, &mi, &ni, &ki, &one, a, &la, b, &lb, &beta, c, &lc);
}

// Row-major products (a row-major R x S matrix is a column-major S x R one).
// C(n x m) = A(n x k) * B(m x k)^T + beta * C
template <typename T>
void mm_nt(int64_t n, int64_t m, int64_t k, const T* A, const T* B, T* C, T beta) {
  blas_gemm('T', 'N', m, n, k, B, k, A, k, beta, C, m);
}
// C(n x m) = A(n x k) * B(k x m)
template <typename T>
void mm_nn(int64_t n, int64_t m, int64_t k, const T* A, const T* B, T* C) {
  blas_gemm('N', 'N', m, n, k, B, m, A, k, T(0), C, m);
}
// C(m x k) += A(n x m)^T * B(n x k)
template <typename T>
void mm_tn_acc(int64_t m, int64_t k, int64_t n, const T* A, const T* B, T* C) {
  blas_gemm('N', 'T', k, m, n, B, k, A, m, T(1), C, k);
}

inline at::Tensor wrap(void* p, int64_t numel, at::ScalarType st) {
  return at::from_blob(p, {numel}, at::TensorOptions().dtype(st));
}

// z = act(p), elementwise over numel values.
template <typename T>
void activate(Activation act, T* p, T* z, int64_t numel) {
  const auto st = c10::CppTypeToScalarType<T>::value;
  if (act == Activation::Relu) {
    for (int64_t i = 0; i < numel; ++i) z[i] = p[i] > T(0) ? p[i] : T(0);
    return;
  }
  at::Tensor pt = wrap(p, numel, st), zt = wrap(z, numel, st);
  switch (act) {
    case Activation::Gelu: at::cpu::gelu_out(zt, pt, "none"); break;
    case Activation::Silu: at::cpu::silu_out(zt, pt); break;
    case Activation::Tanh: at::cpu::tanh_out(zt, pt); break;
    default: break;
  }
}

// dp = act'(p) * dz, given the pre-activation p and the activation z = act(p).
template <typename T>
void activate_backward(Activation act, T* p, T* z, T* dz, T* dp, int64_t numel) {
  const auto st = c10::CppTypeToScalarType<T>::value;
  if (act == Activation::Relu) {
    for (int64_t i = 0; i < numel; ++i) dp[i] = p[i] > T(0) ? dz[i] : T(0);
    return;
  }
  at::Tensor pt = wrap(p, numel, st), zt = wrap(z, numel, st), dzt = wrap(dz, numel, st), dpt = wrap(dp, numel, st);
  switch (act) {
    case Activation::Gelu: at::cpu::gelu_backward_out(dpt, dzt, pt, "none"); break;
    case Activation::Silu: at::cpu::silu_backward_out(dpt, dzt, pt); break;
    case Activation::Tanh: at::cpu::tanh_backward_out(dpt, dzt, zt); break;
    default: break;
  }
}

// Per-thread scratch of one chunk: the inputs z[l] (n x dims[l]) and outputs
// p[l] (n x dims[l+1]) of every layer, p[L-1] being the kernel values k_e, plus
// two ping-pong gradient buffers.
template <typename T>
struct ChunkScratch {
  std::vector<T> storage;
  T* z[kMaxLayers];
  T* p[kMaxLayers];
  T* g0;
  T* g1;
  std::vector<int64_t> rows;
  std::vector<int64_t> cols;

  ChunkScratch(const GnoArgs& a, int64_t chunk) : rows(chunk), cols(chunk) {
    int64_t widest = 0, total = 0;
    for (int l = 0; l <= a.num_layers; ++l) widest = std::max(widest, a.dims[l]);
    for (int l = 0; l < a.num_layers; ++l) total += a.dims[l] + a.dims[l + 1];
    storage.assign(size_t(chunk * (total + 2 * widest)), T(0));
    T* q = storage.data();
    for (int l = 0; l < a.num_layers; ++l) {
      z[l] = q;
      q += chunk * a.dims[l];
      p[l] = q;
      q += chunk * a.dims[l + 1];
    }
    g0 = q;
    g1 = q + chunk * widest;
  }
};

// Edges per chunk: about 128k scalars of scratch (fits L2), a multiple of 16.
inline int64_t chunk_edges(const GnoArgs& a) {
  int64_t per_edge = 0, widest = 0;
  for (int l = 0; l <= a.num_layers; ++l) widest = std::max(widest, a.dims[l]);
  for (int l = 0; l < a.num_layers; ++l) per_edge += a.dims[l] + a.dims[l + 1];
  per_edge += 2 * widest;
  return std::clamp<int64_t>((131072 / per_edge) / 16 * 16, 16, 1024);
}

// Evaluates the MLP on the n edges listed in s.rows / s.cols: gathers
// z[0] = [x[row], y[col] (, f_y[col] for the nonlinear transforms)] and runs every layer.
template <typename T>
void mlp_forward(const GnoArgs& a, const T* x, const T* y, const T* f, const T* prm, int64_t n, ChunkScratch<T>& s) {
  const int64_t d = a.coord_dim, D0 = a.dims[0], Cf = a.f_channels;
  const bool nonlinear = feeds_f(a.transform);
  T* z0 = s.z[0];
  for (int64_t i = 0; i < n; ++i) {
    T* zi = z0 + i * D0;
    const T* xr = x + s.rows[i] * d;
    const T* yc = y + s.cols[i] * d;
    for (int64_t k = 0; k < d; ++k) zi[k] = xr[k];
    for (int64_t k = 0; k < d; ++k) zi[d + k] = yc[k];
    if (nonlinear) {
      const T* fc = f + s.cols[i] * Cf;
      for (int64_t c = 0; c < Cf; ++c) zi[2 * d + c] = fc[c];
    }
  }
  for (int l = 0; l < a.num_layers; ++l) {
    const int64_t din = a.dims[l], dout = a.dims[l + 1];
    const T* W = prm + a.w_off[l];
    const T* b = prm + a.b_off[l];
    T* p = s.p[l];
    mm_nt<T>(n, dout, din, s.z[l], W, p, T(0));
    for (int64_t i = 0; i < n; ++i) {
      T* pi = p + i * dout;
      for (int64_t o = 0; o < dout; ++o) pi[o] += b[o];
    }
    if (l + 1 < a.num_layers) activate<T>(a.act, p, s.z[l + 1], n * dout);
  }
}

// Backpropagates dK (n x C, in s.g0) through the MLP of the chunk (whose
// activations mlp_forward left in s): accumulates the parameter gradients into
// gprm and, when want_input, leaves d z[0] (n x dims[0]) in the returned buffer.
template <typename T>
T* mlp_backward(const GnoArgs& a, const T* prm, int64_t n, ChunkScratch<T>& s, T* gprm, bool want_input) {
  T* dp = s.g0;
  T* dz = s.g1;
  for (int l = a.num_layers - 1; l >= 0; --l) {
    const int64_t din = a.dims[l], dout = a.dims[l + 1];
    mm_tn_acc<T>(dout, din, n, dp, s.z[l], gprm + a.w_off[l]);
    T* gb = gprm + a.b_off[l];
    for (int64_t i = 0; i < n; ++i) {
      const T* dpi = dp + i * dout;
      for (int64_t o = 0; o < dout; ++o) gb[o] += dpi[o];
    }
    if (l == 0 && !want_input) return nullptr;
    mm_nn<T>(n, din, dout, dp, prm + a.w_off[l], dz);
    if (l == 0) return dz;
    // dz is the gradient of z[l] = act(p[l-1]); the new dp overwrites the old one.
    activate_backward<T>(a.act, s.p[l - 1], s.z[l], dz, dp, n * din);
  }
  return nullptr;
}

}  // namespace pyengine::gno::cpu
