// CPU brute-force kNN, exact on the input values.
//
// 1. Every cloud is shifted by the mean of its finite points and scaled by a power
//    of two (translation and uniform scaling keep the ranking), or, for cosine, every
//    row is normalised; this is done in float64 and rounded to the input dtype once.
// 2. The work is cut into (cloud, block of kQueryBlock queries) items, one parallel
//    region over all of them (a fork-join per strip costs more than the strip on a busy
//    machine). An item streams the cloud's points past its queries in strips of up to
//    kStrip points: sequential BLAS GEMMs of kPointBlock points each fill the strip's inner
//    products, then every query scans its row of the strip, keeping a buffer of candidates
//    whose approximate (GEMM-form) distance s lies under a threshold tau.
// 3. tau is rigorous: |s - true squared distance| <= E (a forward error bound of the
//    GEMM form in the rounded, shifted coordinates) and |shifted distance - true
//    distance| <= delta (the rounding of the shift), both bounded per query with the
//    largest point norm of the cloud. With S the k-th smallest s seen so far (or any
//    upper bound of it), no point of the exact top k can have s > tau =
//    (sqrt(S + E) + 2 delta)^2 + E, so the buffer (pruned to tau whenever it fills)
//    always holds the exact top k. The first strip of a query sets tau before
//    collecting, from a bound of its k-th smallest s (s_row_with_kth_bound: the k-th smallest of
//    4k strided group minima): one O(strip) pass instead of repeated selections in a filling
//    buffer, which dominated small clouds (8 clouds of 500 points, d = 32: ~2x faster).
// 4. The buffer's distances are recomputed exactly in float64 from the original
//    coordinates and sorted by (distance, index); NaN distances are dropped.
// No float64 arithmetic is done per (query, point) pair, and memory is O(threads x strip).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PYENGINE_KNN_AVX2 1
#endif

#include "bruteforce/bruteforce.h"

namespace pyengine::bruteforce {
namespace {

constexpr int64_t kQueryBlock = 128;
constexpr int64_t kPointBlock = 512;  // one GEMM: a (128, 512) block of inner products (256 KiB in float32)
// A strip of up to kStrip points is multiplied (GEMM by GEMM) before any query scans it, so the
// first bound of a query's k-th smallest s sees a whole strip: on a cloud of 2000 points it is
// then near the final threshold instead of the k-th of the first 512 points (~4x more
// candidates to collect, select and prune over the later blocks).
constexpr int64_t kStrip = 4096;  // (128, 4096) floats: 2 MiB per thread
constexpr int64_t kChunk = 32;    // values tested at once for a candidate in the collection loop

// The rounded, transformed coordinates of one side and, per row, its squared norm
// (Euclidean) in the compute dtype; rows with a non-finite coordinate are flagged.
template <typename scalar_t>
struct Transformed {
  std::vector<scalar_t> x;     // (n, D)
  std::vector<scalar_t> sq;    // (n,) |x|^2 rounded from float64 (Euclidean), 0 (cosine); +inf if not finite
  std::vector<double> norm;    // (n,) |x| in float64 (upper bounds of the rounded rows' norms)
  std::vector<char> finite;    // (n,)
};

// Per cloud: the shift (D,) and the power-of-two scale of the Euclidean transform.
struct CloudFrame {
  std::vector<double> mean;
  double scale = 1.0;
  double max_norm = 0.0;  // largest |transformed point| of the cloud (after rounding), float64
};

// Branch-free (vectorised): x * 0 is +-0 for a finite x and NaN for +-inf or NaN.
template <typename scalar_t>
bool row_finite(const scalar_t* v, int64_t D) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < D; ++c) acc += static_cast<double>(v[c]) * 0.0;
  return acc == 0;
}

// Transforms rows [r0, r1) of `src` (belonging to cloud frames given by `cloud_of`) into t.
template <typename scalar_t>
void transform_rows(const scalar_t* src, int64_t n, int64_t D, bool cosine, const std::vector<CloudFrame>& frames,
                    const std::vector<int64_t>& cloud_of_row, Transformed<scalar_t>& t) {
  t.x.assign(n * D, scalar_t(0));
  t.sq.assign(n, scalar_t(0));
  t.norm.assign(n, 0.0);
  t.finite.assign(n, 0);
  // grain ~64k coordinates: a 2000 x 256 side is worth both threads (it ran on one at grain 2048 rows)
  at::parallel_for(0, n, std::max<int64_t>(1, 65536 / std::max<int64_t>(D, 1)), [&](int64_t r0, int64_t r1) {
    std::vector<double> v(D);
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* s = src + r * D;
      if (!row_finite(s, D)) {  // a zero row whose s is +inf: decided by the exact recomputation
        t.sq[r] = std::numeric_limits<scalar_t>::infinity();
        continue;
      }
      t.finite[r] = 1;
      scalar_t* o = t.x.data() + r * D;
      if (cosine) {
        double m = 0;
        for (int64_t c = 0; c < D; ++c) m = std::max(m, std::abs(double(s[c])));
        if (m == 0) continue;  // the zero vector: distance 1 to everything, as 1 - <0, p>
        double acc = 0;
        for (int64_t c = 0; c < D; ++c) {
          v[c] = double(s[c]) / m;
          acc += v[c] * v[c];
        }
        const double inv = 1.0 / std::sqrt(acc);
        double n2 = 0;
        for (int64_t c = 0; c < D; ++c) {
          o[c] = static_cast<scalar_t>(v[c] * inv);
          n2 += double(o[c]) * double(o[c]);
        }
        t.norm[r] = std::sqrt(n2);
      } else {
        const CloudFrame& f = frames[cloud_of_row[r]];
        const double* mean = f.mean.data();
        const double scale = f.scale;
        double n2 = 0;
        // any summation order: n2 only enters through the error bound's norms (float64, with margins)
#pragma omp simd reduction(+ : n2)
        for (int64_t c = 0; c < D; ++c) {
          const scalar_t oc = static_cast<scalar_t>((double(s[c]) - mean[c]) * scale);
          o[c] = oc;
          n2 += double(oc) * double(oc);
        }
        t.sq[r] = static_cast<scalar_t>(n2);
        t.norm[r] = std::sqrt(n2);
      }
    }
  });
}

// The frame of one cloud (points [p0, p1), queries [q0, q1)): the mean of its finite points
// and the power-of-two scale bringing the largest shifted coordinate (points and queries)
// into (-1, 1]. Rows are cut into `parts` contiguous ranges reduced in parallel and combined
// in a fixed order. Any shift works (the error bound covers its rounding), so the result
// does not depend on the thread count beyond the last bits of the mean.
template <typename scalar_t>
void cloud_frame(const scalar_t* P, const scalar_t* Q, int64_t p0, int64_t p1, int64_t q0, int64_t q1, int64_t D,
                 int64_t parts, CloudFrame& f) {
  parts = std::max<int64_t>(1, std::min<int64_t>(parts, (p1 - p0) / 64));
  std::vector<double> sum(parts * D, 0.0), mx(parts, 0.0);
  std::vector<int64_t> cnt(parts, 0);
  const int64_t np = p1 - p0, nq = q1 - q0;
  auto range = [&](int64_t n, int64_t t) { return std::make_pair(n * t / parts, n * (t + 1) / parts); };
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      double* acc = sum.data() + t * D;
      const auto [r0, r1] = range(np, t);
      for (int64_t r = p0 + r0; r < p0 + r1; ++r) {
        const scalar_t* s = P + r * D;
        if (!row_finite(s, D)) continue;
        ++cnt[t];
#pragma omp simd
        for (int64_t c = 0; c < D; ++c) acc[c] += double(s[c]);
      }
    }
  });
  f.mean.assign(D, 0.0);
  int64_t n = 0;
  for (int64_t t = 0; t < parts; ++t) {
    n += cnt[t];
    for (int64_t c = 0; c < D; ++c) f.mean[c] += sum[t * D + c];
  }
  if (n) for (double& m : f.mean) m /= double(n);
  const double* mean = f.mean.data();
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      double m = 0;
      auto scan = [&](const scalar_t* X, int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const scalar_t* s = X + r * D;
          if (!row_finite(s, D)) continue;
#pragma omp simd reduction(max : m)
          for (int64_t c = 0; c < D; ++c) {
            const double v = std::abs(double(s[c]) - mean[c]);
            m = v > m ? v : m;
          }
        }
      };
      const auto [a0, a1] = range(np, t);
      scan(P, p0 + a0, p0 + a1);
      if (np > 0) {
        const auto [b0, b1] = range(nq, t);
        scan(Q, q0 + b0, q0 + b1);
      }
      mx[t] = m;
    }
  });
  double m = 0;
  for (double v : mx) m = std::max(m, v);
  int e = 0;
  if (m > 0 && std::isfinite(m)) std::frexp(m, &e);
  f.scale = std::ldexp(1.0, -e);  // exact
}

#if PYENGINE_KNN_AVX2
// Squared distances of eight float rows y[u] to x, each summed in float64 in coordinate order:
// lane u of an accumulator adds (x_c - y_uc)^2 for c = 0, 1, ..., so the sums are bitwise the
// scalar loop's (no FMA: the target is avx2 alone, so nothing contracts). The extension builds
// for baseline x86-64 (SSE2); this one function is compiled for AVX2 and picked at run time.
// Eight rows at a time, four coordinates per step (a 4x4 transpose per four rows): the float64
// recomputation of the candidates was ~1/4 of this kernel's own time at d = 256.
__attribute__((target("avx2"))) void sqdist8_avx2(const float* x, const float* const* y, int64_t D, double* out) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  int64_t c = 0;
  for (; c + 4 <= D; c += 4) {
    __m128 r0 = _mm_loadu_ps(y[0] + c), r1 = _mm_loadu_ps(y[1] + c);
    __m128 r2 = _mm_loadu_ps(y[2] + c), r3 = _mm_loadu_ps(y[3] + c);
    __m128 s0 = _mm_loadu_ps(y[4] + c), s1 = _mm_loadu_ps(y[5] + c);
    __m128 s2 = _mm_loadu_ps(y[6] + c), s3 = _mm_loadu_ps(y[7] + c);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_t = (y0, y1, y2, y3) at coordinate c + t
    _MM_TRANSPOSE4_PS(s0, s1, s2, s3);
    const __m128 rr[4] = {r0, r1, r2, r3}, ss[4] = {s0, s1, s2, s3};
    for (int t = 0; t < 4; ++t) {
      const __m256d xb = _mm256_set1_pd(double(x[c + t]));
      const __m256d d0 = _mm256_sub_pd(xb, _mm256_cvtps_pd(rr[t]));
      const __m256d d1 = _mm256_sub_pd(xb, _mm256_cvtps_pd(ss[t]));
      a0 = _mm256_add_pd(a0, _mm256_mul_pd(d0, d0));
      a1 = _mm256_add_pd(a1, _mm256_mul_pd(d1, d1));
    }
  }
  for (; c < D; ++c) {
    const __m256d xb = _mm256_set1_pd(double(x[c]));
    const __m256d d0 = _mm256_sub_pd(xb, _mm256_set_pd(y[3][c], y[2][c], y[1][c], y[0][c]));
    const __m256d d1 = _mm256_sub_pd(xb, _mm256_set_pd(y[7][c], y[6][c], y[5][c], y[4][c]));
    a0 = _mm256_add_pd(a0, _mm256_mul_pd(d0, d0));
    a1 = _mm256_add_pd(a1, _mm256_mul_pd(d1, d1));
  }
  _mm256_storeu_pd(out, a0);
  _mm256_storeu_pd(out + 4, a1);
}

bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

// Candidate buffer of one query: approximate distances s and point ids, pruned to tau.
template <typename scalar_t>
struct Candidates {
  std::vector<scalar_t> s;
  std::vector<int64_t> j;
  int64_t n = 0;
  scalar_t tau = std::numeric_limits<scalar_t>::infinity();

  void reset(int64_t cap) {
    if (int64_t(s.size()) < cap) {
      s.resize(cap);
      j.resize(cap);
    }
    n = 0;
    tau = std::numeric_limits<scalar_t>::infinity();
  }
};

// Error model of one query (in the transformed frame): |s - d'^2| <= E, |d' - d| <= delta.
struct Bound {
  double E, delta;
  bool cosine;
  // The largest s a member of the exact top k can have, given the k-th smallest s seen so far.
  template <typename scalar_t>
  scalar_t tau(scalar_t S) const {
    if (!(S < std::numeric_limits<scalar_t>::infinity())) return std::numeric_limits<scalar_t>::infinity();
    double t;
    if (cosine) {
      t = double(S) + 2 * E;
    } else {
      const double r = std::sqrt(std::max(double(S) + E, 0.0)) + 2 * delta;
      t = r * r + E;
    }
    t *= 1 + 1e-12;  // the float64 evaluation of tau itself
    const scalar_t ts = static_cast<scalar_t>(t);
    return double(ts) >= t ? ts : std::nextafter(ts, std::numeric_limits<scalar_t>::infinity());
  }
};

// Keeps the candidates under tau (recomputed from the k-th smallest s); grows the buffer
// when pruning frees less than half of it (many near-ties).
template <typename scalar_t>
void prune(Candidates<scalar_t>& c, int64_t K, const Bound& bound, int64_t& cap, std::vector<scalar_t>& tmp) {
  if (c.n >= K) {
    tmp.assign(c.s.begin(), c.s.begin() + c.n);
    std::nth_element(tmp.begin(), tmp.begin() + (K - 1), tmp.end());
    c.tau = std::min(c.tau, bound.tau(tmp[K - 1]));
    int64_t m = 0;
    for (int64_t t = 0; t < c.n; ++t) {
      if (c.s[t] <= c.tau) {
        c.s[m] = c.s[t];
        c.j[m] = c.j[t];
        ++m;
      }
    }
    c.n = m;
  }
  if (c.n * 2 > cap) {
    cap *= 2;
    c.s.resize(cap);
    c.j.resize(cap);
  }
}

// An upper bound S of the K-th smallest value of s[0..n) (n >= K; +inf when fewer than K
// values are finite): at least K values are <= S. The values are cut into G >= K strided
// groups {j : j mod G = g}; the group minima are G distinct elements, so the K-th smallest
// of them bounds the K-th smallest of all. One vectorised elementwise-min pass over the
// row (no branch per value) and one selection among G = 4K values: ~4x cheaper per query
// than the 64-bin histogram it replaces. Strided groups each span the whole row, so
// neighbours that sit at consecutive indices (spatially sorted points) land in different
// groups and the bound is then the exact K-th smallest; a far outlier does not widen it.
//
// Fused with the step before it: the pass turns the GEMM's inner products into s in place,
// row[j] = (base + sq[j]) - two * row[j] (the caller's formula), so the row is read once.
template <typename scalar_t>
scalar_t s_row_with_kth_bound(scalar_t* row, const scalar_t* sq, scalar_t base, scalar_t two, int64_t n, int64_t K,
                              std::vector<scalar_t>& m) {
  const int64_t G = std::min(n, std::max<int64_t>(4 * K, 64));
  m.assign(G, std::numeric_limits<scalar_t>::infinity());
  scalar_t* mg = m.data();
  for (int64_t j = 0; j < n; j += G) {
    scalar_t* r = row + j;
    const scalar_t* q = sq + j;
    const int64_t w = std::min(G, n - j);
#pragma omp simd
    for (int64_t g = 0; g < w; ++g) {
      const scalar_t v = (base + q[g]) - two * r[g];
      r[g] = v;
      mg[g] = v < mg[g] ? v : mg[g];  // never NaN (see the caller)
    }
  }
  std::nth_element(m.begin(), m.begin() + (K - 1), m.end());
  return m[K - 1];
}

// out (qb, pb) = Q (qb, D) . P (pb, D)^T. Called inside the parallel region, where ATen's
// BLAS runs on the calling thread only.
template <typename scalar_t>
void gemm_tile(int64_t pb, int64_t qb, int64_t D, const scalar_t* P, const scalar_t* Q, scalar_t* out, int64_t ldo) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  const at::Tensor p = at::from_blob(const_cast<scalar_t*>(P), {pb, D}, opts);
  const at::Tensor q = at::from_blob(const_cast<scalar_t*>(Q), {qb, D}, opts);
  at::Tensor o = at::from_blob(out, {qb, pb}, {ldo, 1}, opts);  // rows ldo apart: a block of the strip
  at::mm_out(o, q, p.t());
}

template <typename scalar_t>
void knn_blocks(const KnnArgs& a, scalar_t* dist, int64_t* idx) {
  const int64_t D = a.dim, K = a.k, B = a.num_batches;
  const bool cosine = a.cosine;
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  const double u = std::numeric_limits<scalar_t>::epsilon() / 2;  // unit roundoff
  const scalar_t* P0 = a.points.const_data_ptr<scalar_t>();
  const scalar_t* Q0 = a.queries.const_data_ptr<scalar_t>();
  const int64_t* pptr = a.point_ptr.const_data_ptr<int64_t>();
  const int64_t* qptr = a.query_ptr.const_data_ptr<int64_t>();

  // Frames: mean of the finite points, scale = the power of two bringing the largest
  // shifted coordinate (points and queries) near 1.
  std::vector<CloudFrame> frames(B);
  std::vector<int64_t> cloud_p(a.num_points, 0), cloud_q(a.num_queries, 0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t r = pptr[b]; r < pptr[b + 1]; ++r) cloud_p[r] = b;
    for (int64_t r = qptr[b]; r < qptr[b + 1]; ++r) cloud_q[r] = b;
  }
  if (!cosine) {
    // One cloud per thread when there are enough clouds, else the rows of each cloud split
    // over the threads (one cloud of 2000 x 256 took ~1 ms on one thread of two).
    const int64_t nt = at::get_num_threads();
    if (B >= nt) {
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          cloud_frame(P0, Q0, pptr[b], pptr[b + 1], qptr[b], qptr[b + 1], D, 1, frames[b]);
      });
    } else {
      for (int64_t b = 0; b < B; ++b) cloud_frame(P0, Q0, pptr[b], pptr[b + 1], qptr[b], qptr[b + 1], D, nt, frames[b]);
    }
  }
  Transformed<scalar_t> tp, tq;
  transform_rows(P0, a.num_points, D, cosine, frames, cloud_p, tp);
  transform_rows(Q0, a.num_queries, D, cosine, frames, cloud_q, tq);
  for (int64_t r = 0; r < a.num_points; ++r) {
    if (tp.finite[r]) frames[cloud_p[r]].max_norm = std::max(frames[cloud_p[r]].max_norm, tp.norm[r]);
  }

  // Work items: (cloud, first query) blocks of clouds that have points.
  std::vector<std::pair<int64_t, int64_t>> items;
  for (int64_t b = 0; b < B; ++b) {
    if (pptr[b + 1] <= pptr[b]) continue;
    for (int64_t q = qptr[b]; q < qptr[b + 1]; q += kQueryBlock) items.emplace_back(b, q);
  }
  // Forward error constants: gamma_{D+3} with a margin for the float64 transforms.
  const double gam = 1.01 * (D + 3) * u / (1 - (D + 3) * u);
  const double tiny = std::sqrt(double(D)) * double(std::numeric_limits<scalar_t>::denorm_min());

  int64_t max_cloud = 1;
  for (int64_t b = 0; b < B; ++b) max_cloud = std::max(max_cloud, pptr[b + 1] - pptr[b]);
  at::parallel_for(0, int64_t(items.size()), 1, [&](int64_t i0, int64_t i1) {
    std::vector<scalar_t> tile(kQueryBlock * std::min(kStrip, max_cloud));
    std::vector<Candidates<scalar_t>> cand(kQueryBlock);
    std::vector<Bound> bounds(kQueryBlock);
    std::vector<int64_t> caps(kQueryBlock);
    std::vector<std::pair<double, int64_t>> exact;
    std::vector<scalar_t> scratch, minima;
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t b = items[it].first, qs = items[it].second;
      const int64_t qb = std::min(kQueryBlock, qptr[b + 1] - qs);
      const int64_t p0 = pptr[b], p1 = pptr[b + 1];
      const double R = frames[b].max_norm * (1 + gam);
      for (int64_t i = 0; i < qb; ++i) {
        caps[i] = std::max<int64_t>(4 * K, 64);
        cand[i].reset(caps[i]);
        if (cosine) {
          // |<q', p'> - cos| <= 2u (rounded unit rows) + gamma_D (GEMM) + u (1 - x), plus, for
          // float64 rows, the float64 normalisation (~ D u / 2 per side): within 2 gamma + 8u.
          bounds[i] = Bound{2 * gam + 8 * u, 0.0, true};
        } else {
          // |s - |q' - p'|^2| <= (gamma_D [GEMM] + gamma_D or u [norms] + 2u [two roundings]) (|q'| + |p'|)^2
          // and | |q' - p'| - |q - p| scale | <= u (|q'| + |p'|) (the rounded shift), both with margins.
          const double ar = tq.norm[qs + i] * (1 + gam) + R;
          bounds[i] = Bound{2 * gam * ar * ar, 2 * u * ar + 2 * tiny, false};
        }
      }
      for (int64_t ps = p0; ps < p1; ps += kStrip) {
        const int64_t pb = std::min(kStrip, p1 - ps);  // the strip's width
        for (int64_t g0 = 0; g0 < pb; g0 += kPointBlock) {
          gemm_tile<scalar_t>(std::min(kPointBlock, pb - g0), qb, D, tp.x.data() + (ps + g0) * D,
                              tq.x.data() + qs * D, tile.data() + g0, pb);
        }
        const scalar_t* sqp = tp.sq.data() + ps;
        for (int64_t i = 0; i < qb; ++i) {
          const int64_t q = qs + i;
          Candidates<scalar_t>& c = cand[i];
          scalar_t* row = tile.data() + i * pb;
          // s = (|q'|^2 + |p'|^2) - 2 <q', p'>, or (1 + 0) - <q', p'>, in place of the inner
          // products; +inf for non-finite rows (their transformed rows are zero, so never NaN).
          const scalar_t base = !tq.finite[q] ? inf : (cosine ? scalar_t(1) : tq.sq[q]);
          const scalar_t two = cosine ? scalar_t(1) : scalar_t(2);
          if (c.tau == inf && pb >= K) {
            // No bound yet and enough points in this strip: bound the K-th smallest s of the
            // strip (an upper bound of the K-th smallest overall) before collecting.
            c.tau = bounds[i].tau(s_row_with_kth_bound(row, sqp, base, two, pb, K, minima));
          } else {
            for (int64_t j = 0; j < pb; ++j) row[j] = (base + sqp[j]) - two * row[j];
          }
          int64_t& cap = caps[i];
          int64_t n = c.n;
          scalar_t tau = c.tau;
          // Once tau is set, nearly every value is above it: a vectorised test of kChunk values
          // skips a chunk without a candidate, the scalar loop only runs on chunks holding one.
          for (int64_t j0 = 0; j0 < pb; j0 += kChunk) {
            const int64_t j1 = std::min(pb, j0 + kChunk);
            int hit = 0;
#pragma omp simd reduction(| : hit)
            for (int64_t j = j0; j < j1; ++j) hit |= row[j] <= tau;
            if (!hit) continue;
            if (n + (j1 - j0) <= cap) {
              // Room for the whole chunk: a branch-free compaction (every value is written, the
              // count only advances for candidates), where a compare-and-branch per value
              // mispredicted on about every candidate.
              scalar_t* cs = c.s.data();
              int64_t* cj = c.j.data();
              for (int64_t j = j0; j < j1; ++j) {
                const scalar_t s = row[j];
                cs[n] = s;
                cj[n] = ps + j;
                n += s <= tau;
              }
              continue;
            }
            for (int64_t j = j0; j < j1; ++j) {
              const scalar_t s = row[j];
              if (s <= tau) {
                if (n == cap) {
                  c.n = n;
                  prune(c, K, bounds[i], cap, scratch);
                  n = c.n;
                  tau = c.tau;
                  if (!(s <= tau)) continue;
                }
                c.s[n] = s;
                c.j[n] = ps + j;
                ++n;
              }
            }
          }
          c.n = n;
          if (c.n > 2 * K || (c.n >= K && c.tau == inf)) prune(c, K, bounds[i], cap, scratch);
        }
      }
      // Exact distances of the candidates, from the original coordinates. A last prune first:
      // the float64 recomputation (D per candidate) is the costliest step per candidate, and up
      // to 2K may still be buffered (N = M = 2000, d = 256, k = 20: 21.5 -> 18.2 ms).
      for (int64_t i = 0; i < qb; ++i) {
        if (cand[i].n > K) prune(cand[i], K, bounds[i], caps[i], scratch);
      }
      for (int64_t i = 0; i < qb; ++i) {
        const int64_t q = qs + i;
        const Candidates<scalar_t>& c = cand[i];
        const scalar_t* x = Q0 + q * D;
        exact.clear();
        int64_t t = 0;
        if (!cosine) {
#if PYENGINE_KNN_AVX2
          if constexpr (std::is_same_v<scalar_t, float>) {
            if (cpu_has_avx2()) {
              for (; t < c.n; t += 8) {  // a last group of fewer than 8 repeats its last row
                const int64_t w = std::min<int64_t>(8, c.n - t);
                const float* ys[8];
                double acc[8];
                for (int u = 0; u < 8; ++u) ys[u] = P0 + c.j[t + std::min<int64_t>(u, w - 1)] * D;
                sqdist8_avx2(x, ys, D, acc);
                for (int u = 0; u < w; ++u) {
                  const double v = std::sqrt(acc[u]);
                  if (v == v) exact.emplace_back(v, c.j[t + u]);
                }
              }
            }
          }
#endif
          // Four candidates at a time, each summed in coordinate order (the same roundings as
          // one at a time), so that four dependency chains of additions overlap.
          for (; t + 4 <= c.n; t += 4) {
            const scalar_t* y0 = P0 + c.j[t] * D;
            const scalar_t* y1 = P0 + c.j[t + 1] * D;
            const scalar_t* y2 = P0 + c.j[t + 2] * D;
            const scalar_t* y3 = P0 + c.j[t + 3] * D;
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int64_t cc = 0; cc < D; ++cc) {
              const double xc = double(x[cc]);
              const double d0 = xc - double(y0[cc]), d1 = xc - double(y1[cc]);
              const double d2 = xc - double(y2[cc]), d3 = xc - double(y3[cc]);
              a0 += d0 * d0;
              a1 += d1 * d1;
              a2 += d2 * d2;
              a3 += d3 * d3;
            }
            const double v[4] = {std::sqrt(a0), std::sqrt(a1), std::sqrt(a2), std::sqrt(a3)};
            for (int u = 0; u < 4; ++u) {
              if (v[u] == v[u]) exact.emplace_back(v[u], c.j[t + u]);
            }
          }
        }
        for (; t < c.n; ++t) {
          const scalar_t* y = P0 + c.j[t] * D;
          double v;
          if (cosine) {
            double dot = 0, nx = 0, ny = 0;
            for (int64_t cc = 0; cc < D; ++cc) {
              dot += double(x[cc]) * double(y[cc]);
              nx += double(x[cc]) * double(x[cc]);
              ny += double(y[cc]) * double(y[cc]);
            }
            v = (nx > 0 && ny > 0) ? 1.0 - dot / std::sqrt(nx * ny) : 1.0;
          } else {
            double acc = 0;
            for (int64_t cc = 0; cc < D; ++cc) {
              const double diff = double(x[cc]) - double(y[cc]);
              acc += diff * diff;
            }
            v = std::sqrt(acc);
          }
          if (v == v) exact.emplace_back(v, c.j[t]);
        }
        const int64_t n = std::min<int64_t>(K, int64_t(exact.size()));
        // The n smallest (distance, index) pairs, a total order (NaN dropped), ascending.
        if (n < int64_t(exact.size())) std::nth_element(exact.begin(), exact.begin() + (n - 1), exact.end());
        std::sort(exact.begin(), exact.begin() + n);
        scalar_t* dr = dist + q * K;
        int64_t* ir = idx + q * K;
        for (int64_t t = 0; t < n; ++t) {
          dr[t] = static_cast<scalar_t>(exact[t].first);
          ir[t] = exact[t].second;
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_bruteforce_cpu(const at::Tensor& points, const at::Tensor& queries,
                                                      const at::Tensor& point_ptr, const at::Tensor& query_ptr,
                                                      int64_t k, bool cosine) {
  const KnnArgs a = check_knn_args(points, queries, point_ptr, query_ptr, k, cosine);
  auto dist = at::full({a.num_queries, k}, std::numeric_limits<double>::infinity(), a.points.options());
  auto idx = at::full({a.num_queries, k}, -1, a.points.options().dtype(at::kLong));
  if (a.num_queries == 0 || a.num_points == 0) return {dist, idx};
  AT_DISPATCH_FLOATING_TYPES(a.points.scalar_type(), "knn_bruteforce_cpu", [&] {
    knn_blocks<scalar_t>(a, dist.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) { m.impl("knn_bruteforce", &knn_bruteforce_cpu); }

}  // namespace pyengine::bruteforce
