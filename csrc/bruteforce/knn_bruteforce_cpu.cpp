// CPU brute-force kNN: distances of a block of queries to a block of points come
// from one GEMM (at::mm, the BLAS torch was built with) as |q|^2 + |p|^2 - 2 <q, p>
// (or the cosine of the angle), each query keeps its running top k while the
// blocks stream by (OpenMP over the queries of a block), and the k winners'
// distances are finally recomputed exactly from the coordinates (in float64)
// and re-sorted. Memory stays O(block) instead of the (M, N) of cdist + topk.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bruteforce/bruteforce.h"

namespace pyengine::bruteforce {
namespace {

constexpr int64_t kQueryBlock = 256;
constexpr int64_t kPointBlock = 1024;  // a (256, 1024) float tile of inner products stays in L2

template <typename scalar_t>
void knn_blocks(const KnnArgs& a, scalar_t* dist, int64_t* idx) {
  const int64_t D = a.dim, K = a.k;
  const bool cosine = a.cosine;  // a local, so the compiler can unswitch the inner loop
  const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
  // |p|^2 (Euclidean) or |p| (cosine), per row, in the input precision like the GEMM.
  at::Tensor pn = a.cosine ? a.points.norm(2, {1}) : (a.points * a.points).sum(1);
  at::Tensor qn = a.cosine ? a.queries.norm(2, {1}) : (a.queries * a.queries).sum(1);
  const scalar_t* pnp = pn.const_data_ptr<scalar_t>();
  const scalar_t* qnp = qn.const_data_ptr<scalar_t>();
  const int64_t* pptr = a.point_ptr.const_data_ptr<int64_t>();
  const int64_t* qptr = a.query_ptr.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < a.num_batches; ++b) {
    const int64_t p0 = pptr[b], p1 = pptr[b + 1], q0 = qptr[b], q1 = qptr[b + 1];
    if (p1 <= p0 || q1 <= q0) continue;
    for (int64_t qs = q0; qs < q1; qs += kQueryBlock) {
      const int64_t qb = std::min(kQueryBlock, q1 - qs);
      const at::Tensor Q = a.queries.narrow(0, qs, qb);
      for (int64_t ps = p0; ps < p1; ps += kPointBlock) {
        const int64_t pb = std::min(kPointBlock, p1 - ps);
        const at::Tensor S = at::mm(Q, a.points.narrow(0, ps, pb).t()).contiguous();  // (qb, pb) inner products
        const scalar_t* s = S.const_data_ptr<scalar_t>();
        at::parallel_for(0, qb, 8, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t q = qs + i;
            scalar_t* dr = dist + q * K;
            int64_t* ir = idx + q * K;
            const scalar_t* sr = s + i * pb;
            const scalar_t nq = qnp[q];
            // The row's current last entry, cached: most candidates fail the first comparison.
            scalar_t worst = ir[K - 1] < 0 ? inf : dr[K - 1];
            for (int64_t j = 0; j < pb; ++j) {
              const int64_t pj = ps + j;
              scalar_t d;
              if (cosine) {
                const scalar_t den = nq * pnp[pj];
                d = den > scalar_t(0) ? scalar_t(1) - sr[j] / den : scalar_t(1);
              } else {
                d = std::max(nq + pnp[pj] - scalar_t(2) * sr[j], scalar_t(0));
              }
              if (!(d <= worst)) continue;  // also drops NaN
              if (beats_last(d, pj, dr[K - 1], ir[K - 1])) {
                topk_insert(dr, ir, K, d, pj);
                worst = ir[K - 1] < 0 ? inf : dr[K - 1];
              }
            }
          }
        });
      }
    }
  }
  // Exact distances of the winners (the GEMM form loses digits to cancellation), re-sorted.
  const scalar_t* P = a.points.const_data_ptr<scalar_t>();
  const scalar_t* Qp = a.queries.const_data_ptr<scalar_t>();
  at::parallel_for(0, a.num_queries, 16, [&](int64_t i0, int64_t i1) {
    std::vector<double> ed(K);
    std::vector<int64_t> ei(K);
    for (int64_t q = i0; q < i1; ++q) {
      scalar_t* dr = dist + q * K;
      int64_t* ir = idx + q * K;
      int64_t n = 0;
      for (int64_t t = 0; t < K && ir[t] >= 0; ++t) {
        const scalar_t* x = Qp + q * D;
        const scalar_t* y = P + ir[t] * D;
        double v;
        if (a.cosine) {
          double dot = 0, nx = 0, ny = 0;
          for (int64_t c = 0; c < D; ++c) {
            dot += double(x[c]) * double(y[c]);
            nx += double(x[c]) * double(x[c]);
            ny += double(y[c]) * double(y[c]);
          }
          v = (nx > 0 && ny > 0) ? 1.0 - dot / std::sqrt(nx * ny) : 1.0;
        } else {
          double acc = 0;
          for (int64_t c = 0; c < D; ++c) {
            const double diff = double(x[c]) - double(y[c]);
            acc += diff * diff;
          }
          v = std::sqrt(acc);
        }
        // insertion into the exact, sorted list
        int64_t p = n++;
        while (p > 0 && (ed[p - 1] > v || (ed[p - 1] == v && ei[p - 1] > ir[t]))) {
          ed[p] = ed[p - 1];
          ei[p] = ei[p - 1];
          --p;
        }
        ed[p] = v;
        ei[p] = ir[t];
      }
      for (int64_t t = 0; t < n; ++t) {
        dr[t] = static_cast<scalar_t>(ed[t]);
        ir[t] = ei[t];
      }
      for (int64_t t = n; t < K; ++t) dr[t] = inf;
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
