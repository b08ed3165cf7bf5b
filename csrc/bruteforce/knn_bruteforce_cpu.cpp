// CPU brute-force kNN, exact on the input values.
//
// 1. Every cloud is shifted by the mean of its finite points and scaled by a power
//    of two (translation and uniform scaling keep the ranking), or, for cosine, every
//    row is normalised; this is done in float64 and rounded to the input dtype once.
// 2. The work is cut into (cloud, block of kQueryBlock queries) items, one parallel
//    region over all of them (a fork-join per tile costs more than the tile on a busy
//    machine). An item streams the cloud's points past its queries in tiles of
//    kPointBlock: one sequential BLAS GEMM per tile gives the inner products, and every
//    query keeps a buffer of candidates whose approximate (GEMM-form) distance s lies
//    under a threshold tau.
// 3. tau is rigorous: |s - true squared distance| <= E (a forward error bound of the
//    GEMM form in the rounded, shifted coordinates) and |shifted distance - true
//    distance| <= delta (the rounding of the shift), both bounded per query with the
//    largest point norm of the cloud. With S the k-th smallest s seen so far (or any
//    upper bound of it), no point of the exact top k can have s > tau =
//    (sqrt(S + E) + 2 delta)^2 + E, so the buffer (pruned to tau whenever it fills)
//    always holds the exact top k. The first tile of a query sets tau before
//    collecting, from a histogram bound of its k-th smallest s (kth_upper_bound): one
//    O(tile) pass instead of repeated selections in a filling buffer, which dominated
//    small clouds (8 clouds of 500 points, d = 32: ~2x faster).
// 4. The buffer's distances are recomputed exactly in float64 from the original
//    coordinates and sorted by (distance, index); NaN distances are dropped.
// No float64 arithmetic is done per (query, point) pair, and memory is O(threads x tile).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bruteforce/bruteforce.h"

namespace pyengine::bruteforce {
namespace {

constexpr int64_t kQueryBlock = 64;
constexpr int64_t kPointBlock = 1024;  // a (64, 1024) tile of inner products (256 KiB in float32) stays in L2

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

inline bool row_finite(const double* v, int64_t D) {
  for (int64_t c = 0; c < D; ++c)
    if (!std::isfinite(v[c])) return false;
  return true;
}

template <typename scalar_t>
bool row_finite(const scalar_t* v, int64_t D) {
  for (int64_t c = 0; c < D; ++c)
    if (!std::isfinite(static_cast<double>(v[c]))) return false;
  return true;
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
        double n2 = 0;
        for (int64_t c = 0; c < D; ++c) {
          o[c] = static_cast<scalar_t>((double(s[c]) - f.mean[c]) * f.scale);
          n2 += double(o[c]) * double(o[c]);
        }
        t.sq[r] = static_cast<scalar_t>(n2);
        t.norm[r] = std::sqrt(n2);
      }
    }
  });
}

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

// An upper bound S of the K-th smallest finite value of s[0..n): at least K values
// are <= S (+inf if fewer than K are finite). One pass for the finite range, one
// 64-bin histogram pass keeping each bin's count and largest value; S is the largest
// value of the bins that reach K. Whatever the rounding of the bin index, every value
// counted in those bins is <= S, so the bound is rigorous; it exceeds the exact K-th
// smallest by at most the spread of one bin. O(n) with no data-dependent branch
// beyond the bin index, where a selection (nth_element) costs several passes of
// mispredicted compares.
template <typename scalar_t>
scalar_t kth_upper_bound(const scalar_t* s, int64_t n, int64_t K) {
  constexpr int kBins = 64;
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  scalar_t lo = inf, hi = -inf;
  int64_t nf = 0;
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t v = s[j];
    const bool f = v < inf;  // +inf: a non-finite row; never NaN (see the caller)
    lo = v < lo ? v : lo;
    hi = (f && v > hi) ? v : hi;
    nf += f;
  }
  if (nf < K) return inf;
  if (!(hi > lo)) return hi;  // every finite value is the same
  int32_t cnt[kBins] = {};
  scalar_t top[kBins];
  std::fill_n(top, kBins, -inf);
  const scalar_t scale = scalar_t(kBins) / (hi - lo);  // may be inf for a tiny spread: then the last bin
  for (int64_t j = 0; j < n; ++j) {
    const scalar_t v = s[j];
    if (!(v < inf)) continue;
    const scalar_t t = (v - lo) * scale;
    const int b = t < scalar_t(kBins - 1) ? static_cast<int>(t) : kBins - 1;  // t >= 0 or NaN (-> last)
    ++cnt[b];
    top[b] = v > top[b] ? v : top[b];
  }
  int64_t cum = 0;
  scalar_t S = -inf;
  for (int b = 0; b < kBins; ++b) {
    cum += cnt[b];
    S = top[b] > S ? top[b] : S;
    if (cum >= K) return S;
  }
  return hi;  // (not reached: the bins hold all nf >= K finite values)
}

// out (qb, pb) = Q (qb, D) . P (pb, D)^T. Called inside the parallel region, where ATen's
// BLAS runs on the calling thread only.
template <typename scalar_t>
void gemm_tile(int64_t pb, int64_t qb, int64_t D, const scalar_t* P, const scalar_t* Q, scalar_t* out) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  const at::Tensor p = at::from_blob(const_cast<scalar_t*>(P), {pb, D}, opts);
  const at::Tensor q = at::from_blob(const_cast<scalar_t*>(Q), {qb, D}, opts);
  at::Tensor o = at::from_blob(out, {qb, pb}, opts);
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
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        CloudFrame& f = frames[b];
        f.mean.assign(D, 0.0);
        int64_t cnt = 0;
        for (int64_t r = pptr[b]; r < pptr[b + 1]; ++r) {
          const scalar_t* s = P0 + r * D;
          if (!row_finite(s, D)) continue;
          ++cnt;
          for (int64_t c = 0; c < D; ++c) f.mean[c] += double(s[c]);
        }
        if (cnt) for (double& m : f.mean) m /= double(cnt);
        double mx = 0;
        auto scan = [&](const scalar_t* X, int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const scalar_t* s = X + r * D;
            if (!row_finite(s, D)) continue;
            for (int64_t c = 0; c < D; ++c) mx = std::max(mx, std::abs(double(s[c]) - f.mean[c]));
          }
        };
        scan(P0, pptr[b], pptr[b + 1]);
        if (pptr[b + 1] > pptr[b]) scan(Q0, qptr[b], qptr[b + 1]);
        int e = 0;
        if (mx > 0 && std::isfinite(mx)) std::frexp(mx, &e);
        f.scale = std::ldexp(1.0, -e);  // exact; shifted coordinates end up in (-1, 1]
      }
    });
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

  at::parallel_for(0, int64_t(items.size()), 1, [&](int64_t i0, int64_t i1) {
    std::vector<scalar_t> tile(kQueryBlock * kPointBlock);
    std::vector<Candidates<scalar_t>> cand(kQueryBlock);
    std::vector<Bound> bounds(kQueryBlock);
    std::vector<int64_t> caps(kQueryBlock);
    std::vector<std::pair<double, int64_t>> exact;
    std::vector<scalar_t> scratch;
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
      for (int64_t ps = p0; ps < p1; ps += kPointBlock) {
        const int64_t pb = std::min(kPointBlock, p1 - ps);
        gemm_tile<scalar_t>(pb, qb, D, tp.x.data() + ps * D, tq.x.data() + qs * D, tile.data());
        const scalar_t* sqp = tp.sq.data() + ps;
        for (int64_t i = 0; i < qb; ++i) {
          const int64_t q = qs + i;
          Candidates<scalar_t>& c = cand[i];
          scalar_t* row = tile.data() + i * pb;
          // s = (|q'|^2 + |p'|^2) - 2 <q', p'>, or (1 + 0) - <q', p'>, in place of the inner
          // products; +inf for non-finite rows (their transformed rows are zero, so never NaN).
          const scalar_t base = !tq.finite[q] ? inf : (cosine ? scalar_t(1) : tq.sq[q]);
          const scalar_t two = cosine ? scalar_t(1) : scalar_t(2);
          for (int64_t j = 0; j < pb; ++j) row[j] = (base + sqp[j]) - two * row[j];
          // No bound yet and enough points in this tile: bound the K-th smallest s of the
          // tile (an upper bound of the K-th smallest overall) before collecting.
          if (c.tau == inf && pb >= K) c.tau = bounds[i].tau(kth_upper_bound(row, pb, K));
          int64_t& cap = caps[i];
          int64_t n = c.n;
          scalar_t tau = c.tau;
          for (int64_t j = 0; j < pb; ++j) {
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
