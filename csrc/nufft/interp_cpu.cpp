// CPU type-2 interpolation: values at points from the fine grid, the adjoint of
// spreading. The grid is first copied into a periodically padded one (W extra
// nodes on each side of every dimension), so the kernel footprint of every point
// is a plain contiguous box and the inner loop needs no wrap-around logic.
// Points are visited in bin-sorted order, so neighbouring points read the same
// cache lines.
#include <ATen/Parallel.h>

#include <memory>

#include "nufft/kernels_cpu.h"

namespace pyengine::nufft {
namespace {

// out (B, P0, P1, P2) = periodic extension of fine (B, n0, n1, n2), shifted by L per dimension.
template <typename T>
void pad_periodic(const T* fine, const int64_t* n, const int64_t* P, int64_t L[3], int64_t B, T* out) {
  at::parallel_for(0, B * P[0], 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / P[0], p0 = r % P[0];
      const int64_t g0 = ((p0 - L[0]) % n[0] + n[0]) % n[0];
      for (int64_t p1 = 0; p1 < P[1]; ++p1) {
        const int64_t g1 = ((p1 - L[1]) % n[1] + n[1]) % n[1];
        const T* src = fine + 2 * (((b * n[0] + g0) * n[1] + g1) * n[2]);
        T* dst = out + 2 * (((b * P[0] + p0) * P[1] + p1) * P[2]);
        cpu::for_each_wrapped_run(-L[2], P[2], n[2], [&](int64_t g2, int64_t t2, int64_t len) {
          std::copy(src + 2 * g2, src + 2 * (g2 + len), dst + 2 * t2);
        });
      }
    }
  });
}

// Interpolate sorted points [q0, q1) from the padded grid g (B, P0, P1, P2).
template <typename T, int D, int W, int VB>
PYE_NUFFT_INLINE void interp_range(const SpreadArgs& a, const cpu::KernelSetup<T, W>& ks, const T* g,
                                   const int64_t* P, int64_t q0, int64_t q1, T* o) {
  constexpr int off = 3 - D;
  const int64_t B = a.B, M = a.M;
  const int64_t* perm = a.perm.const_data_ptr<int64_t>();
  const bool dbl = a.points.scalar_type() == at::kDouble;
  const double* xd = dbl ? a.points.const_data_ptr<double>() : nullptr;
  const float* xf = dbl ? nullptr : a.points.const_data_ptr<float>();
  const int w = ks.w;
  using V = cpu::Vec<T, 2 * W, VB>;
  alignas(64) T ker[D][W];
  alignas(64) T acc_arr[2 * W];
  constexpr int64_t kAhead = 8;
  for (int64_t q = q0; q < q1; ++q) {
    if (q + kAhead < q1) {  // points are read in sorted, i.e. random, order
      const int64_t jn = perm[q + kAhead];
      __builtin_prefetch(dbl ? static_cast<const void*>(xd + jn * D) : static_cast<const void*>(xf + jn * D));
    }
    const int64_t j = perm[q];
    int64_t o3[3] = {0, 0, 0};
    for (int i = 0; i < D; ++i) {
      const double x = dbl ? xd[j * D + i] : double(xf[j * D + i]);
      o3[off + i] = ks.template eval<VB>(x, i, ker[i]) + W;  // index in the padded grid
    }
    const T* k_last = ker[D - 1];
    for (int64_t b = 0; b < B; ++b) {
      const T* gb = g + 2 * b * P[0] * P[1] * P[2];
      V acc = cpu::vzero<T, 2 * W, VB>();
      if constexpr (D == 1) {
        acc = cpu::vload<T, 2 * W, VB>(gb + 2 * o3[2]);
      } else if constexpr (D == 2) {
        for (int a1 = 0; a1 < w; ++a1)
          cpu::vfma<T, 2 * W, VB>(acc, ker[0][a1], cpu::vload<T, 2 * W, VB>(gb + 2 * ((o3[1] + a1) * P[2] + o3[2])));
      } else {
        for (int a0 = 0; a0 < w; ++a0) {
          const T* plane = gb + 2 * (((o3[0] + a0) * P[1] + o3[1]) * P[2] + o3[2]);
          const T f0 = ker[0][a0];
          for (int a1 = 0; a1 < w; ++a1)
            cpu::vfma<T, 2 * W, VB>(acc, f0 * ker[1][a1], cpu::vload<T, 2 * W, VB>(plane + 2 * a1 * P[2]));
        }
      }
      cpu::vstore<T, 2 * W, VB>(acc_arr, acc);
      T re = 0, im = 0;
      for (int i = 0; i < W; ++i) {
        re += acc_arr[2 * i] * k_last[i];
        im += acc_arr[2 * i + 1] * k_last[i];
      }
      o[2 * (b * M + j)] = re;
      o[2 * (b * M + j) + 1] = im;
    }
  }
}

template <typename T, int D, int W>
void interp_range_baseline(const SpreadArgs& a, const cpu::KernelSetup<T, W>& ks, const T* g, const int64_t* P,
                           int64_t q0, int64_t q1, T* o) {
  interp_range<T, D, W, 16>(a, ks, g, P, q0, q1, o);
}

template <typename T, int D, int W>
PYE_NUFFT_TARGET_AVX2 void interp_range_avx2(const SpreadArgs& a, const cpu::KernelSetup<T, W>& ks, const T* g,
                                             const int64_t* P, int64_t q0, int64_t q1, T* o) {
  interp_range<T, D, W, 32>(a, ks, g, P, q0, q1, o);
}

template <typename T, int D, int W>
void interp_impl(const SpreadArgs& a, at::Tensor& out) {
  const cpu::KernelSetup<T, W> ks(a);
  constexpr int off = 3 - D;
  int64_t n[3] = {1, 1, 1}, P[3] = {1, 1, 1}, L[3] = {0, 0, 0};
  for (int i = 0; i < D; ++i) {
    n[off + i] = a.grid[i];
    L[off + i] = W;
    P[off + i] = a.grid[i] + 2 * W;
  }
  const int64_t B = a.B;
  // Every entry is written by pad_periodic, so no zero fill.
  std::unique_ptr<T[]> padded(new T[size_t(2 * B * P[0] * P[1] * P[2])]);
  pad_periodic<T>(reinterpret_cast<const T*>(a.data.const_data_ptr<c10::complex<T>>()), n, P, L, B, padded.get());
  T* o = reinterpret_cast<T*>(out.data_ptr<c10::complex<T>>());
  const bool avx2 = cpu::cpu_has_avx2();
  at::parallel_for(0, a.M, 1024, [&](int64_t q0, int64_t q1) {
    if (avx2) {
      interp_range_avx2<T, D, W>(a, ks, padded.get(), P, q0, q1, o);
    } else {
      interp_range_baseline<T, D, W>(a, ks, padded.get(), P, q0, q1, o);
    }
  });
}

template <typename T, int W>
void interp_dim(const SpreadArgs& a, at::Tensor& out) {
  switch (a.dim) {
    case 1: return interp_impl<T, 1, W>(a, out);
    case 2: return interp_impl<T, 2, W>(a, out);
    default: return interp_impl<T, 3, W>(a, out);
  }
}

template <typename T>
void interp_width(const SpreadArgs& a, at::Tensor& out) {
  switch (cpu::padded_width(a.width)) {
    case 4: return interp_dim<T, 4>(a, out);
    case 8: return interp_dim<T, 8>(a, out);
    case 12: return interp_dim<T, 12>(a, out);
    default: return interp_dim<T, 16>(a, out);
  }
}

}  // namespace

at::Tensor nufft_interp_cpu(const at::Tensor& points, const at::Tensor& fine, const at::Tensor& perm,
                            const at::Tensor& bin_ptr, c10::IntArrayRef bins, int64_t width, double beta) {
  const SpreadArgs a = check_interp_args(points, fine, perm, bin_ptr, bins, width, beta);
  auto out = at::zeros({a.B, a.M}, fine.options());
  if (a.M == 0 || a.B == 0) return out;
  if (a.points.scalar_type() == at::kDouble) {
    interp_width<double>(a, out);
  } else {
    interp_width<float>(a, out);
  }
  return out;
}

}  // namespace pyengine::nufft
