// CPU bin sort and type-1 spreading, and the CPU registrations of the family.
//
// Spreading runs over the bin-sorted points in chunks ("subproblems"). Each
// chunk spreads its points into a private subgrid covering only its bounding
// box (plus the kernel width), so threads never write the same memory. The
// subgrids of a wave of chunks are then added into the fine grid in parallel
// over the slowest grid dimension: each thread owns a slab of the output and
// pulls in the parts of every subgrid that land there. No atomics, no locks,
// and the result does not depend on the thread count's timing.
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <atomic>
#include <exception>

#include "common/checks.h"
#include "nufft/kernels_cpu.h"

namespace pyengine::nufft {

// ----------------------------------------------------------------------------- sort

std::tuple<at::Tensor, at::Tensor> nufft_sort_cpu(const at::Tensor& points_in, c10::IntArrayRef grid,
                                                  c10::IntArrayRef bins) {
  check_points(points_in, "points");
  const int dim = int(points_in.size(1));
  check_grid_and_bins(grid, bins, dim);
  for (const int64_t n : grid) TORCH_CHECK_VALUE(n >= 1, "grid sizes must be positive, got ", grid);
  const auto points = points_in.contiguous().to(at::kDouble);
  const int64_t M = points.size(0);
  int64_t nb[kMaxDim] = {1, 1, 1}, bs[kMaxDim] = {1, 1, 1};
  double scale[kMaxDim] = {1, 1, 1}, n[kMaxDim] = {1, 1, 1};
  int64_t total = 1;
  for (int i = 0; i < dim; ++i) {
    bs[i] = bins[i];
    nb[i] = bin_count(grid[i], bins[i]);
    n[i] = double(grid[i]);
    scale[i] = n[i] / (2.0 * 3.14159265358979323846);
    total *= nb[i];
  }
  const double* x = points.const_data_ptr<double>();
  auto keys = at::empty({M}, at::kLong);
  int64_t* key = keys.data_ptr<int64_t>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, M, 1 << 14, [&](int64_t j0, int64_t j1) {
    bool ok = true;
    for (int64_t j = j0; j < j1; ++j) {
      int64_t k = 0;
      for (int i = 0; i < dim; ++i) {
        const double xi = x[j * dim + i];
        ok &= std::isfinite(xi);
        const double u = fold_to_grid<double>(xi, scale[i], n[i]);
        const int64_t b = std::min<int64_t>(int64_t(u) / bs[i], nb[i] - 1);
        k = k * nb[i] + b;
      }
      key[j] = k;
    }
    if (!ok) finite.store(false, std::memory_order_relaxed);
  });
  TORCH_CHECK_VALUE(finite.load(), "points must be finite (found NaN or inf)");

  // Stable counting sort with one histogram per chunk of points.
  const int64_t nchunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), M / 4096 + 1));
  std::vector<std::vector<int64_t>> hist(nchunks, std::vector<int64_t>(total, 0));
  auto chunk_begin = [&](int64_t c) { return M * c / nchunks; };
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t j = chunk_begin(c); j < chunk_begin(c + 1); ++j) ++hist[c][key[j]];
  });
  auto bin_ptr = at::empty({total + 1}, at::kLong);
  int64_t* bp = bin_ptr.data_ptr<int64_t>();
  int64_t run = 0;
  for (int64_t b = 0; b < total; ++b) {
    bp[b] = run;
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t h = hist[c][b];
      hist[c][b] = run;  // becomes this chunk's write cursor
      run += h;
    }
  }
  bp[total] = run;
  auto perm = at::empty({M}, at::kLong);
  int64_t* pm = perm.data_ptr<int64_t>();
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t j = chunk_begin(c); j < chunk_begin(c + 1); ++j) pm[hist[c][key[j]]++] = j;
  });
  return {perm, bin_ptr.to(points_in.device())};
}

// ----------------------------------------------------------------------------- spread

namespace {

// One chunk's private subgrid: (B, s0, s1, s2) complex, origin lo on the fine grid.
template <typename T>
struct Subgrid {
  std::vector<T> data;  // interleaved re, im
  int64_t lo[kMaxDim], s[kMaxDim];
};

// Spread points [p0, p1) of the sorted order into sub (dims padded to 3: unused ones have size 1).
template <typename T, int D, int W, int VB>
PYE_NUFFT_INLINE void spread_chunk(const SpreadArgs& a, const cpu::KernelSetup<T, W>& ks, int64_t p0, int64_t p1, Subgrid<T>& sub,
                  std::vector<T>& kerbuf, std::vector<int64_t>& i0buf, std::vector<T>& cbuf) {
  const T* vals = reinterpret_cast<const T*>(a.data.const_data_ptr<c10::complex<T>>());
  const int64_t* perm = a.perm.const_data_ptr<int64_t>();
  const int64_t n_pts = p1 - p0, M = a.M, B = a.B;
  const bool dbl = a.points.scalar_type() == at::kDouble;
  const double* xd = dbl ? a.points.const_data_ptr<double>() : nullptr;
  const float* xf = dbl ? nullptr : a.points.const_data_ptr<float>();
  kerbuf.resize(size_t(n_pts) * D * W);
  i0buf.resize(size_t(n_pts) * D);
  cbuf.resize(size_t(2 * n_pts * B));
  // Pass 1: kernel values and bounding box.
  int64_t lo[kMaxDim], hi[kMaxDim];
  for (int i = 0; i < kMaxDim; ++i) lo[i] = INT64_MAX, hi[i] = INT64_MIN;
  // Pass 1 also gathers the strengths into chunk order (p, b): the points are visited
  // in sorted order, i.e. randomly in memory, and this short loop lets the cache
  // misses overlap (with prefetches a few points ahead) instead of stalling pass 2.
  constexpr int64_t kAhead = 8;
  for (int64_t p = 0; p < n_pts; ++p) {
    if (p + kAhead < n_pts) {
      const int64_t jn = perm[p0 + p + kAhead];
      __builtin_prefetch(dbl ? static_cast<const void*>(xd + jn * D) : static_cast<const void*>(xf + jn * D));
      for (int64_t b = 0; b < B; ++b) __builtin_prefetch(vals + 2 * (b * M + jn));
    }
    const int64_t j = perm[p0 + p];
    for (int64_t b = 0; b < B; ++b) {
      cbuf[2 * (p * B + b)] = vals[2 * (b * M + j)];
      cbuf[2 * (p * B + b) + 1] = vals[2 * (b * M + j) + 1];
    }
    for (int i = 0; i < D; ++i) {
      const double x = dbl ? xd[j * D + i] : double(xf[j * D + i]);
      const int64_t i0 = ks.template eval<VB>(x, i, &kerbuf[(p * D + i) * W]);
      i0buf[p * D + i] = i0;
      lo[i] = std::min(lo[i], i0);
      hi[i] = std::max(hi[i], i0);
    }
  }
  // Pad the dimension list to 3 (leading size-1 dimensions).
  constexpr int off = 3 - D;
  for (int i = 0; i < 3; ++i) sub.lo[i] = 0, sub.s[i] = 1;
  for (int i = 0; i < D; ++i) {
    sub.lo[off + i] = lo[i];
    sub.s[off + i] = hi[i] - lo[i] + W;
  }
  const int64_t s0 = sub.s[0], s1 = sub.s[1], s2 = sub.s[2];
  sub.data.assign(size_t(2 * B * s0 * s1 * s2), T(0));
  T* g = sub.data.data();
  // Pass 2: spread. ckk = (c * k_last) interleaved re/im, so each row update is one
  // real axpy of length 2W on vector registers.
  using V = cpu::Vec<T, 2 * W, VB>;
  alignas(64) T ckk_arr[2 * W];
  for (int64_t p = 0; p < n_pts; ++p) {
    const T* kp = &kerbuf[p * D * W];
    const T* k_last = kp + (D - 1) * W;
    int64_t o[3] = {0, 0, 0};
    for (int i = 0; i < D; ++i) o[off + i] = i0buf[p * D + i] - lo[i];
    for (int64_t b = 0; b < B; ++b) {
      const T cr = cbuf[2 * (p * B + b)], ci = cbuf[2 * (p * B + b) + 1];
      for (int i = 0; i < W; ++i) {
        ckk_arr[2 * i] = cr * k_last[i];
        ckk_arr[2 * i + 1] = ci * k_last[i];
      }
      const V ckk = cpu::vload<T, 2 * W, VB>(ckk_arr);
      T* gb = g + 2 * b * s0 * s1 * s2;
      if constexpr (D == 1) {
        cpu::axpy<T, 2 * W, VB>(gb + 2 * o[2], T(1), ckk);
      } else if constexpr (D == 2) {
        const T* k1 = kp;
        for (int a1 = 0; a1 < ks.w; ++a1) cpu::axpy<T, 2 * W, VB>(gb + 2 * ((o[1] + a1) * s2 + o[2]), k1[a1], ckk);
      } else {
        const T* k0 = kp;
        const T* k1 = kp + W;
        for (int a0 = 0; a0 < ks.w; ++a0) {
          T* plane = gb + 2 * (((o[0] + a0) * s1 + o[1]) * s2 + o[2]);
          const T f0 = k0[a0];
          for (int a1 = 0; a1 < ks.w; ++a1) cpu::axpy<T, 2 * W, VB>(plane + 2 * a1 * s2, f0 * k1[a1], ckk);
        }
      }
    }
  }
}

// Add the subgrids of one wave into out (B, n0, n1, n2), parallel over slabs of dimension 0
// (of the padded 3-D view; for D < 3 the first real dimension is the one we split).
template <typename T, int D>
void add_wave(const SpreadArgs& a, std::vector<Subgrid<T>>& subs, int64_t nsub, T* out) {
  constexpr int off = 3 - D;
  int64_t n[3] = {1, 1, 1};
  for (int i = 0; i < D; ++i) n[off + i] = a.grid[i];
  const int64_t B = a.B;
  const int split = off;  // the slowest real dimension
  const int64_t nsplit = n[split];
  const int64_t grain = D == 1 ? 4096 : 1;
  at::parallel_for(0, nsplit, grain, [&](int64_t gb, int64_t ge) {
    for (int64_t c = 0; c < nsub; ++c) {
      const Subgrid<T>& sub = subs[c];
      const int64_t s0 = sub.s[0], s1 = sub.s[1], s2 = sub.s[2];
      const T* src = sub.data.data();
      cpu::for_each_wrapped_run(sub.lo[split], sub.s[split], nsplit, [&](int64_t g, int64_t t, int64_t len) {
        const int64_t lo = std::max(g, gb), hi = std::min(g + len, ge);
        if (lo >= hi) return;
        const int64_t tlo = t + (lo - g);
        for (int64_t b = 0; b < B; ++b) {
          if constexpr (D == 1) {
            T* dst = out + 2 * (b * n[2] + lo);
            const T* s = src + 2 * (b * s2 + tlo);
            for (int64_t i = 0; i < 2 * (hi - lo); ++i) dst[i] += s[i];
          } else if constexpr (D == 2) {
            for (int64_t g1 = lo, t1 = tlo; g1 < hi; ++g1, ++t1) {
              const T* srow = src + 2 * ((b * s1 + t1) * s2);
              T* drow = out + 2 * ((b * n[1] + g1) * n[2]);
              cpu::for_each_wrapped_run(sub.lo[2], s2, n[2], [&](int64_t g2, int64_t t2, int64_t l2) {
                for (int64_t i = 0; i < 2 * l2; ++i) drow[2 * g2 + i] += srow[2 * t2 + i];
              });
            }
          } else {
            for (int64_t g0 = lo, t0 = tlo; g0 < hi; ++g0, ++t0) {
              cpu::for_each_wrapped_run(sub.lo[1], s1, n[1], [&](int64_t g1s, int64_t t1s, int64_t l1) {
                for (int64_t k = 0; k < l1; ++k) {
                  const T* srow = src + 2 * (((b * s0 + t0) * s1 + t1s + k) * s2);
                  T* drow = out + 2 * (((b * n[0] + g0) * n[1] + g1s + k) * n[2]);
                  cpu::for_each_wrapped_run(sub.lo[2], s2, n[2], [&](int64_t g2, int64_t t2, int64_t l2) {
                    for (int64_t i = 0; i < 2 * l2; ++i) drow[2 * g2 + i] += srow[2 * t2 + i];
                  });
                }
              });
            }
          }
        }
      });
    }
  });
}

template <typename T, int D, int W>
void spread_chunk_baseline(const SpreadArgs& a, const cpu::KernelSetup<T, W>& ks, int64_t p0, int64_t p1,
                           Subgrid<T>& sub, std::vector<T>& kerbuf, std::vector<int64_t>& i0buf,
                           std::vector<T>& cbuf) {
  spread_chunk<T, D, W, 16>(a, ks, p0, p1, sub, kerbuf, i0buf, cbuf);
}

template <typename T, int D, int W>
PYE_NUFFT_TARGET_AVX2 void spread_chunk_avx2(const SpreadArgs& a, const cpu::KernelSetup<T, W>& ks, int64_t p0,
                                             int64_t p1, Subgrid<T>& sub, std::vector<T>& kerbuf,
                                             std::vector<int64_t>& i0buf, std::vector<T>& cbuf) {
  spread_chunk<T, D, W, 32>(a, ks, p0, p1, sub, kerbuf, i0buf, cbuf);
}

template <typename T, int D, int W>
void spread_impl(const SpreadArgs& a, at::Tensor& out) {
  const cpu::KernelSetup<T, W> ks(a);
  T* o = reinterpret_cast<T*>(out.data_ptr<c10::complex<T>>());
  const int64_t M = a.M;
  // Chunks of 8k sorted points: fewer points would make each subgrid mostly halo
  // (the kernel width around a thin slab), and zeroing and adding halos costs more
  // than spreading. Channels share the chunk's kernel values.
  const int64_t chunk = 8192;
  const int64_t nchunks = (M + chunk - 1) / chunk;
  const int nt = std::max(1, at::get_num_threads());
  // Chunks per wave: each wave ends in a parallel add-back (two barriers), so waves
  // are long enough for barriers not to matter, short enough to bound subgrid memory.
  // With B channels a subgrid is B times larger, so waves shrink to bound memory.
  const int64_t wave = std::max<int64_t>(nt, std::min<int64_t>(8 * nt, 32 * int64_t(nt) / std::max<int64_t>(1, a.B)));
  std::vector<Subgrid<T>> subs(wave);
  const bool avx2 = cpu::cpu_has_avx2();
  std::vector<std::vector<T>> kerbufs(nt);
  std::vector<std::vector<int64_t>> i0bufs(nt);
  std::vector<std::vector<T>> cbufs(nt);
  for (int64_t w0 = 0; w0 < nchunks; w0 += wave) {
    const int64_t nsub = std::min(wave, nchunks - w0);
    // An exception escaping an OpenMP region terminates the process (e.g.
    // std::bad_alloc from a subgrid): the first one is kept and rethrown after it.
    std::exception_ptr error;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t c = 0; c < nsub; ++c) {
      if (failed.load(std::memory_order_relaxed)) continue;
      try {
        const int tid = omp_get_thread_num();
        const int64_t p0 = (w0 + c) * chunk, p1 = std::min(M, p0 + chunk);
        if (avx2) {
          spread_chunk_avx2<T, D, W>(a, ks, p0, p1, subs[c], kerbufs[tid], i0bufs[tid], cbufs[tid]);
        } else {
          spread_chunk_baseline<T, D, W>(a, ks, p0, p1, subs[c], kerbufs[tid], i0bufs[tid], cbufs[tid]);
        }
      } catch (...) {
#pragma omp critical(pyengine_nufft_spread_error)
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    add_wave<T, D>(a, subs, nsub, o);
  }
}

template <typename T, int W>
void spread_dim(const SpreadArgs& a, at::Tensor& out) {
  switch (a.dim) {
    case 1: return spread_impl<T, 1, W>(a, out);
    case 2: return spread_impl<T, 2, W>(a, out);
    default: return spread_impl<T, 3, W>(a, out);
  }
}

template <typename T>
void spread_width(const SpreadArgs& a, at::Tensor& out) {
  switch (cpu::padded_width(a.width)) {
    case 4: return spread_dim<T, 4>(a, out);
    case 8: return spread_dim<T, 8>(a, out);
    case 12: return spread_dim<T, 12>(a, out);
    default: return spread_dim<T, 16>(a, out);
  }
}

}  // namespace

at::Tensor nufft_spread_cpu(const at::Tensor& points, const at::Tensor& values, const at::Tensor& perm,
                            const at::Tensor& bin_ptr, c10::IntArrayRef grid, c10::IntArrayRef bins, int64_t width,
                            double beta) {
  const SpreadArgs a = check_spread_args(points, values, perm, bin_ptr, grid, bins, width, beta);
  std::vector<int64_t> shape{a.B};
  for (int i = 0; i < a.dim; ++i) shape.push_back(a.grid[i]);
  auto out = at::zeros(shape, values.options());
  if (a.M == 0 || a.B == 0) return out;
  if (a.points.scalar_type() == at::kDouble) {
    spread_width<double>(a, out);
  } else {
    spread_width<float>(a, out);
  }
  return out;
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("nufft_sort", &nufft_sort_cpu);
  m.impl("nufft_spread", &nufft_spread_cpu);
  m.impl("nufft_interp", &nufft_interp_cpu);
}

}  // namespace pyengine::nufft
