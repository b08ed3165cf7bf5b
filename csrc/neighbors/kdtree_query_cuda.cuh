#pragma once
// GPU k-d tree queries: radius (count then fill), multi-radius and kNN, one
// thread per query (see kdtree_cuda.cuh for the design).
#include <ATen/ATen.h>
#include <thrust/functional.h>
#include <thrust/scan.h>
#include <thrust/sort.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/checks.h"
#include "neighbors/kdtree_common_cuda.cuh"
#include "neighbors/kdtree_walk_cuda.cuh"
#include "neighbors/neighbors.h"

namespace pyengine::neighbors::cuda {

// Query i of thread j (Morton order, or j itself) and its batch b.
struct QueryMap {
  const int64_t* order;      // (M,) or null
  const int64_t* query_ptr;  // (B + 1,)
  int64_t B;
  PYE_HD int64_t batch_of(int64_t i) const {
    int64_t lo = 0, hi = B + 1;  // first entry > i
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (query_ptr[mid] <= i) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const int64_t b = lo - 1;
    return b < 0 ? 0 : (b > B - 1 ? B - 1 : b);
  }
  PYE_HD int64_t query(int64_t j) const { return order ? order[j] : j; }
};

// What one node row says about the tree: flags bit 0, the row would send a
// walk out of bounds (0 <= begin <= end <= N, child ids both -1 or both in
// [0, K)); bit 1, an inner node whose children do not split its range in two
// adjacent parts, or are the same node; bit 2, an inner node with a child of
// empty range. inner: 1 for an inner node.
struct NodeSummary {
  int32_t flags;
  int64_t inner;
};

struct NodeCheck {
  const int64_t* nodes;
  int64_t N, K;
  PYE_HD NodeSummary operator()(int64_t i) const {
    const int64_t* nd = nodes + 4 * i;
    const bool leaf = nd[2] == -1 && nd[3] == -1;
    const bool inner = 0 <= nd[2] && nd[2] < K && 0 <= nd[3] && nd[3] < K;
    const bool good = 0 <= nd[0] && nd[0] <= nd[1] && nd[1] <= N && (leaf || inner);
    NodeSummary s{good ? 0 : 1, 0};
    if (good && inner) {
      const int64_t* l = nodes + 4 * nd[2];
      const int64_t* r = nodes + 4 * nd[3];
      s.inner = 1;
      if (!(nd[2] != nd[3] && l[0] == nd[0] && l[1] == r[0] && r[1] == nd[1])) s.flags |= 2;
      if (l[0] == l[1] || r[0] == r[1]) s.flags |= 4;
    }
    return s;
  }
};

struct CombineSummary {
  PYE_HD NodeSummary operator()(const NodeSummary& a, const NodeSummary& b) const {
    return NodeSummary{a.flags | b.flags, a.inner + b.inner};
  }
};

// In-degree marks: every child of an inner node, and every root (plain stores
// of 1, so concurrent writers agree).
struct MarkChildren {
  const int64_t* nodes;
  uint8_t* mark;
  PYE_HD void operator()(int64_t i) const {
    const int64_t* nd = nodes + 4 * i;
    if (nd[2] >= 0) {
      mark[nd[2]] = 1;
      mark[nd[3]] = 1;
    }
  }
};

struct MarkRoots {
  const int64_t* roots;
  uint8_t* mark;
  PYE_HD void operator()(int64_t b) const {
    if (roots[b] >= 0) mark[roots[b]] = 1;
  }
};

struct FlagUnmarked {
  const uint8_t* mark;
  int32_t* flag;
  PYE_HD void operator()(int64_t i) const {
    if (!mark[i]) *flag = 1;
  }
};

constexpr const char* kNotATree =
    "nodes does not describe a tree: every node must be reached exactly once from the roots, and an inner node's "
    "children must split its range in two (corrupt child ids)";

// The CPU's structure check (tree_structure_ok, neighbors_args.cpp) on a host copy of
// nodes. Only for trees with empty child ranges (never built by kdtree_build), which the
// device check below cannot decide.
inline bool host_tree_structure_ok(const at::Tensor& nodes_dev, const std::vector<int64_t>& roots) {
  const auto host = nodes_dev.to(at::kCPU).contiguous();
  return tree_structure_ok(host.const_data_ptr<int64_t>(), host.size(0), roots.data(), int64_t(roots.size()));
}

// |x| in double, +inf for NaN or +-Inf: a max-reduction of it is the largest
// magnitude and says whether all values are finite.
template <class T>
struct AbsOrInf {
  double inf;
  PYE_HD double operator()(T x) const { return x - x == T(0) ? abs_of(double(x)) : inf; }
};

template <class Backend, class T>
double max_abs_or_inf(Backend& be, const T* x, int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  return n == 0 ? 0.0
                : thrust::transform_reduce(be.policy(), x, x + n, AbsOrInf<T>{inf}, 0.0, thrust::maximum<double>());
}

// Coordinates in tree order; flags perm entries out of range.
template <class T, int D>
struct GatherTree {
  const int64_t* perm;
  const T* points;
  int64_t N;
  T* coords;
  int32_t* bad;
  PYE_HD void operator()(int64_t i) const {
    int64_t id = perm[i];
    if (id < 0 || id >= N) {
      *bad = 1;
      id = 0;
    }
    for (int k = 0; k < D; ++k) coords[i * D + k] = points[id * D + k];
  }
};

// Morton code of each query (10 bits per side in 3D, 16 in 2D) in its batch's
// root box, under the batch id: the processing order of the queries.
template <class T, int D>
struct MortonKey {
  const T* queries;
  QueryMap qm;
  const int64_t* roots;
  const T* bounds;
  uint64_t* keys;
  int64_t* order;
  PYE_HD void operator()(int64_t i) const {
    constexpr int kBits = D == 3 ? 10 : 16;
    const int64_t b = qm.batch_of(i);
    const int64_t r = roots[b];
    uint32_t code = 0;
    if (r >= 0) {
      const T* box = bounds + 2 * D * r;
      for (int k = 0; k < D; ++k) {
        const T w = box[D + k] - box[k];
        T f = w > 0 ? (queries[i * D + k] - box[k]) / w * T(1 << kBits) : T(0);
        // (inf / inf is NaN where a side's extent overflows: cell 0; the order is only a heuristic)
        f = f > T(0) ? min_of(f, T((1 << kBits) - 1)) : T(0);
        const uint32_t cell = static_cast<uint32_t>(f);
        for (int bit = 0; bit < kBits; ++bit) code |= ((cell >> bit) & 1u) << (D * bit + k);
      }
    }
    keys[i] = (static_cast<uint64_t>(b) << 32) | code;
    order[i] = i;
  }
};

// A checked tree ready for walks, and the processing order of the queries.
template <class T, int D>
struct Prepared {
  DeviceTree<T, D> tree;
  QueryMap qm;
  at::Tensor coords, order, err;
  std::vector<int64_t> roots_host, qptr_host;
  double max_abs = 0;  // largest |coordinate| of the queries and (float64) the points
  // Whether distances must be NormDist keys (float64 beyond kWideAbove, the
  // CPU's long double case) given the largest radius.
  bool wide(double max_radius) const {
    return std::is_same_v<T, double> && (max_abs > kWideAbove || max_radius > kWideAbove);
  }
};

template <class T, int D, class Backend>
Prepared<T, D> prepare(Backend& be, const TreeArgs& a) {
  const int64_t N = a.num_points, K = a.num_nodes, B = a.num_batches, M = a.num_queries;
  Prepared<T, D> p;
  const int64_t* nodes = a.nodes.const_data_ptr<int64_t>();
  // The tree's structure, as the CPU checks it (check_tree_values): rows in
  // range, children splitting their parent's range, and every node reached
  // exactly once from the roots. One reduction over the rows (the sync the
  // range check always had); reached-once is "in-degree 1": the roots plus the
  // children of the inner nodes are K entries and mark every node (counted at
  // the perm check's sync below). When children never have empty ranges, the
  // ranges shrink along every edge, so there is no cycle, and in-degree 1
  // means reached exactly once; otherwise (trees kdtree_build never makes) the
  // CPU's walk runs on a host copy.
  const NodeSummary sum =
      K > 0 ? thrust::transform_reduce(be.policy(), Count(0), Count(K), NodeCheck{nodes, N, K}, NodeSummary{0, 0},
                                       CombineSummary())
            : NodeSummary{0, 0};
  TORCH_CHECK_VALUE(!(sum.flags & 1), "nodes is not a valid k-d tree: every row needs 0 <= begin <= end <= N (", N,
                    ") and child ids both -1 (leaf) or both in [0, K) (K = ", K, ")");
  TORCH_CHECK_VALUE(K < (int64_t(1) << 31), "too many k-d tree nodes (", K, ") for the CUDA queries");
  const auto roots_cpu = a.roots.to(at::kCPU);
  const auto qptr_cpu = a.query_ptr.to(at::kCPU);
  p.roots_host.assign(roots_cpu.const_data_ptr<int64_t>(), roots_cpu.const_data_ptr<int64_t>() + B);
  p.qptr_host.assign(qptr_cpu.const_data_ptr<int64_t>(), qptr_cpu.const_data_ptr<int64_t>() + B + 1);
  int64_t num_roots = 0;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(-1 <= p.roots_host[b] && p.roots_host[b] < K, "roots must hold node ids in [0, K) or -1 (K = ",
                      K, "), got roots[", b, "] = ", p.roots_host[b]);
    num_roots += p.roots_host[b] >= 0;
  }
  TORCH_CHECK_VALUE(B > 0 || M == 0, "queries need a batch, but roots is empty");
  TORCH_CHECK_VALUE(!(sum.flags & 2) && num_roots + 2 * sum.inner == K, kNotATree);
  if (sum.flags & 4) TORCH_CHECK_VALUE(host_tree_structure_ok(a.nodes, p.roots_host), kNotATree);
  // bad[0]: perm out of range; bad[1]: a node no root or parent names.
  auto bad = at::zeros({2}, a.perm.options().dtype(at::kInt));
  if (K > 0 && !(sum.flags & 4)) {
    auto mark = at::zeros({K}, a.perm.options().dtype(at::kByte));
    for_n(be, K, MarkChildren{nodes, mark.data_ptr<uint8_t>()});
    for_n(be, B, MarkRoots{a.roots.const_data_ptr<int64_t>(), mark.data_ptr<uint8_t>()});
    for_n(be, K, FlagUnmarked{mark.data_ptr<uint8_t>(), bad.data_ptr<int32_t>() + 1});
  }
  // Queries finite, and the largest magnitude (for float64: the CPU's switch to
  // wide distances looks at the points too).
  p.max_abs = max_abs_or_inf(be, a.queries.const_data_ptr<T>(), M * D);
  TORCH_CHECK_VALUE(p.max_abs < std::numeric_limits<double>::infinity(), "queries contains NaN or Inf");
  if constexpr (std::is_same_v<T, double>) {
    p.max_abs = std::max(p.max_abs, max_abs_or_inf(be, a.points.const_data_ptr<T>(), N * D));
  }

  // Leaf scans read the points in tree order (contiguous per leaf); the
  // gather checks perm's range on the way.
  p.coords = at::empty({N, D}, a.points.options());
  for_n(be, N, GatherTree<T, D>{a.perm.const_data_ptr<int64_t>(), a.points.const_data_ptr<T>(), N,
                                p.coords.template data_ptr<T>(), bad.data_ptr<int32_t>()});
  const auto bad_host = bad.to(at::kCPU);
  TORCH_CHECK_VALUE(bad_host.const_data_ptr<int32_t>()[1] == 0, kNotATree);
  TORCH_CHECK_VALUE(bad_host.const_data_ptr<int32_t>()[0] == 0, "perm must hold point indices in [0, N) (N = ", N,
                    ")");
  p.tree = DeviceTree<T, D>{nodes, a.bounds.const_data_ptr<T>(), a.perm.const_data_ptr<int64_t>(),
                            p.coords.template data_ptr<T>(), K};
  p.qm = QueryMap{nullptr, a.query_ptr.const_data_ptr<int64_t>(), B};

  // Morton order of the queries; small query sets stay in cache anyway.
  if (M >= 1024 && B > 0) {
    p.order = at::empty({M}, a.perm.options());
    auto keys = at::empty({M}, a.perm.options());
    auto* k64 = reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>());
    for_n(be, M, MortonKey<T, D>{a.queries.const_data_ptr<T>(), p.qm, a.roots.const_data_ptr<int64_t>(),
                                 a.bounds.const_data_ptr<T>(), k64, p.order.template data_ptr<int64_t>()});
    thrust::sort_by_key(be.policy(), k64, k64 + M, p.order.template data_ptr<int64_t>());
    p.qm.order = p.order.template data_ptr<int64_t>();
  }
  p.err = at::zeros({kNumErrors}, a.perm.options().dtype(at::kInt));
  return p;
}

// Raises for the error slots the walks set.
inline void check_walk_errors(const at::Tensor& err) {
  const auto e = err.to(at::kCPU);
  const int32_t* f = e.const_data_ptr<int32_t>();
  TORCH_CHECK_VALUE(f[kErrCycle] == 0,
                    "nodes does not describe a tree: a node is reachable twice from a root (corrupt child ids)");
  TORCH_CHECK_VALUE(f[kErrStack] == 0, "nodes does not describe a tree the CUDA walks can follow: deeper than ",
                    kStack, " levels or a node reachable twice (corrupt child ids); kdtree_build never makes either");
  TORCH_INTERNAL_ASSERT(f[kErrFill] == 0, "kdtree radius (CUDA): the fill pass disagrees with the count pass");
  TORCH_CHECK_VALUE(f[kErrKnn] == 0, "k is larger than the number of points of a query's batch");
}

// Key thresholds of a query (M::threshold of a radius, see kdtree_walk_cuda.cuh):
// the query's own radius, or R shared ascending ones.
template <class T, class M>
struct Radii {
  using K = typename M::Key;
  K r2[kMaxRadii];
  const T* per_query;  // (M,) radii, or null
  int R;
  PYE_HD void get(int64_t i, K* out) const {
    if (per_query) {
      out[0] = M::threshold(per_query[i]);
    } else {
      for (int s = 0; s < R; ++s) out[s] = r2[s];
    }
  }
};

struct CountOne {
  int64_t cap, n = 0;
  PYE_HD bool done() const { return cap > 0 && n >= cap; }
  PYE_HD void all(int64_t b, int64_t e) { n += e - b; }
  PYE_HD void one(int64_t, int t) { n += t == 0; }
};

struct CountRanks {
  int64_t* hist;  // R + 1 counters: points of rank t
  int64_t cap;
  PYE_HD bool done() const { return cap > 0 && hist[0] >= cap; }
  PYE_HD void all(int64_t b, int64_t e) { hist[0] += e - b; }
  PYE_HD void one(int64_t, int t) { ++hist[t]; }
};

// Writes the ids inside radius into the row; never past its counted length
// (a disagreement is reported by the caller, n != len).
struct FillOne {
  const int64_t* perm;
  int64_t* out;
  int64_t len, n = 0;
  PYE_HD bool done() const { return false; }
  PYE_HD void put(int64_t pos) {
    if (n < len) out[n] = perm[pos];
    ++n;
  }
  PYE_HD void all(int64_t b, int64_t e) {
    for (int64_t pos = b; pos < e; ++pos) put(pos);
  }
  PYE_HD void one(int64_t pos, int t) {
    if (t == 0) put(pos);
  }
};

// A point of rank t goes to the rows of every radius s >= t.
struct FillRanks {
  const int64_t* perm;
  int64_t* out[kMaxRadii];
  int64_t len[kMaxRadii];
  int64_t n[kMaxRadii];
  int R;
  PYE_HD bool done() const { return false; }
  PYE_HD void put(int64_t pos, int t) {
    const int64_t id = perm[pos];
    for (int s = t; s < R; ++s) {
      if (n[s] < len[s]) out[s][n[s]] = id;
      ++n[s];
    }
  }
  PYE_HD void all(int64_t b, int64_t e) {
    for (int64_t pos = b; pos < e; ++pos) put(pos, 0);
  }
  PYE_HD void one(int64_t pos, int t) {
    if (t < R) put(pos, t);
  }
};

// Count pass: row lengths into row_ptr[s][i + 1] (capped at cap).
template <int kR, class M, class T, int D>
struct RadiusCount {
  using K = typename M::Key;
  DeviceTree<T, D> tree;
  QueryMap qm;
  const T* queries;
  const int64_t* roots;
  Radii<T, M> radii;
  int64_t cap;
  int64_t* rp[kMaxRadii];
  int32_t* err;
  PYE_HD void operator()(int64_t j) const {
    const int64_t i = qm.query(j), b = qm.batch_of(i);
    const T* q = queries + i * D;
    K r2[kMaxRadii];
    radii.get(i, r2);
    const int R = radii.R;
    if constexpr (kR == 1) {
      CountOne v{cap};
      radius_walk<1, M, T, D>(tree, roots[b], q, r2, 1, cap < 0, err, v);
      rp[0][i + 1] = cap > 0 && v.n > cap ? cap : v.n;
    } else {
      int64_t hist[kMaxRadii + 1];
      for (int t = 0; t <= R; ++t) hist[t] = 0;
      CountRanks v{hist, cap};
      radius_walk<0, M, T, D>(tree, roots[b], q, r2, R, cap < 0, err, v);
      int64_t run = 0;
      for (int t = 0; t < R; ++t) {
        run += hist[t];
        rp[t][i + 1] = cap > 0 && run > cap ? cap : run;
      }
    }
  }
};

// Fill pass: each row written in place, then sorted by point index. With a
// cap, the nearest (distance, index) within the largest radius are kept in a
// heap in the largest radius's row (d2 alongside); radius t takes the first
// len_t of them, which are exactly its own nearest len_t.
template <int kR, class M, class T, int D>
struct RadiusFill {
  using K = typename M::Key;
  DeviceTree<T, D> tree;
  QueryMap qm;
  const T* queries;
  const int64_t* roots;
  Radii<T, M> radii;
  int64_t cap;
  const int64_t* rp[kMaxRadii];
  int64_t* col[kMaxRadii];
  K* d2;  // (nnz of the largest radius,) keys, with a cap
  int32_t* err;
  PYE_HD void operator()(int64_t j) const {
    const int64_t i = qm.query(j), b = qm.batch_of(i);
    const T* q = queries + i * D;
    K r2[kMaxRadii];
    radii.get(i, r2);
    const int R = kR > 0 ? kR : radii.R;
    if (cap > 0) {
      const int64_t start = rp[R - 1][i], len = rp[R - 1][i + 1] - start;
      int64_t* ids = col[R - 1] + start;
      const int64_t n = nearest_walk<M, T, D>(tree, roots[b], q, len, r2[R - 1], d2 + start, ids, err);
      if (n < 0) return;
      if (n != len) {
        err[kErrFill] = 1;
        return;
      }
      for (int t = 0; t + 1 < R; ++t) {
        const int64_t lt = rp[t][i + 1] - rp[t][i];
        if (lt > len) {
          err[kErrFill] = 1;
          return;
        }
        int64_t* out = col[t] + rp[t][i];
        for (int64_t m = 0; m < lt; ++m) out[m] = ids[m];
        sort_ids(out, lt);
      }
      sort_ids(ids, len);
    } else if constexpr (kR == 1) {
      const int64_t len = rp[0][i + 1] - rp[0][i];
      FillOne v{tree.perm, col[0] + rp[0][i], len};
      if (!radius_walk<1, M, T, D>(tree, roots[b], q, r2, 1, true, err, v)) return;
      if (v.n != len) {
        err[kErrFill] = 1;
        return;
      }
      sort_ids(v.out, len);
    } else {
      FillRanks v;
      v.perm = tree.perm;
      v.R = R;
      for (int s = 0; s < R; ++s) {
        v.out[s] = col[s] + rp[s][i];
        v.len[s] = rp[s][i + 1] - rp[s][i];
        v.n[s] = 0;
      }
      if (!radius_walk<0, M, T, D>(tree, roots[b], q, r2, R, true, err, v)) return;
      for (int s = 0; s < R; ++s) {
        if (v.n[s] != v.len[s]) {
          err[kErrFill] = 1;
          return;
        }
        sort_ids(v.out[s], v.len[s]);
      }
    }
  }
};

// One walk per query for R <= kMaxRadii radii (kR = R when 1): (row_ptr, col)
// per radius, in the order of radii.r2 (ascending).
template <int kR, class Metric, class T, int D, class Backend>
std::vector<std::pair<at::Tensor, at::Tensor>> radius_search(Backend& be, const TreeArgs& a, Prepared<T, D>& p,
                                                             const Radii<T, Metric>& radii, int64_t cap) {
  const int64_t M = a.num_queries;
  const int R = radii.R;
  const auto lopt = a.perm.options();
  std::vector<at::Tensor> row_ptr(R), col(R);
  RadiusCount<kR, Metric, T, D> count{p.tree, p.qm, a.queries.const_data_ptr<T>(), a.roots.const_data_ptr<int64_t>(),
                              radii, cap, {}, p.err.template data_ptr<int32_t>()};
  for (int s = 0; s < R; ++s) {
    row_ptr[s] = at::zeros({M + 1}, lopt);
    count.rp[s] = row_ptr[s].data_ptr<int64_t>();
  }
  for_n(be, M, count);
  for (int s = 0; s < R; ++s) {
    int64_t* rp = count.rp[s];
    thrust::inclusive_scan(be.policy(), rp + 1, rp + M + 1, rp + 1);
  }
  check_walk_errors(p.err);
  std::vector<at::Tensor> last(R);
  for (int s = 0; s < R; ++s) last[s] = row_ptr[s].narrow(0, M, 1);
  const auto nnz = at::cat(last).to(at::kCPU);
  RadiusFill<kR, Metric, T, D> fill{p.tree, p.qm, a.queries.const_data_ptr<T>(), a.roots.const_data_ptr<int64_t>(),
                            radii, cap, {}, {}, nullptr, p.err.template data_ptr<int32_t>()};
  for (int s = 0; s < R; ++s) {
    col[s] = at::empty({nnz.const_data_ptr<int64_t>()[s]}, lopt);
    fill.rp[s] = count.rp[s];
    fill.col[s] = col[s].data_ptr<int64_t>();
  }
  at::Tensor d2;
  if (cap > 0) {
    d2 = at::empty({nnz.const_data_ptr<int64_t>()[R - 1]}, a.points.options().dtype(at::kDouble));
    fill.d2 = d2.data_ptr<double>();
  }
  for_n(be, M, fill);
  check_walk_errors(p.err);
  std::vector<std::pair<at::Tensor, at::Tensor>> out(R);
  for (int s = 0; s < R; ++s) out[s] = {row_ptr[s], col[s]};
  return out;
}

// A radius as itself, or +inf when it is negative, NaN or Inf: a max-reduction
// is the largest radius and says whether all are valid.
template <class T>
struct RadiusOrInf {
  double inf;
  PYE_HD double operator()(T r) const { return r - r == T(0) && r >= T(0) ? double(r) : inf; }
};

// Runs f(M{}) with the distance Metric of kdtree_walk_cuda.cuh: SqDist, or
// NormDist for float64 values beyond kWideAbove (where the CPU uses long double).
template <class T, class F>
void dispatch_metric(bool wide, const F& f) {
  if constexpr (std::is_same_v<T, double>) {
    if (wide) {
      f(NormDist{});
      return;
    }
  }
  f(SqDist{});
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor> radius(Backend& be, const at::Tensor& points, const at::Tensor& perm,
                                          const at::Tensor& nodes, const at::Tensor& bounds, const at::Tensor& roots,
                                          const at::Tensor& queries, const at::Tensor& query_ptr,
                                          const at::Tensor& radius_in, int64_t max_neighbors) {
  const TreeArgs a = check_tree_args(points, perm, nodes, bounds, roots, queries, query_ptr);
  check_max_neighbors(max_neighbors);
  check_dim(radius_in, 1, "radius");
  check_same_dtype(radius_in, "radius", points, "points");
  check_same_device(radius_in, "radius", points, "points");
  TORCH_CHECK_VALUE(radius_in.size(0) == a.num_queries, "radius must have one entry per query (", a.num_queries,
                    "), got ", radius_in.size(0));
  const auto rad = radius_in.contiguous();
  std::pair<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_radius_gpu", [&] {
    using T = scalar_t;
    const T* r = rad.const_data_ptr<T>();
    const int64_t M = a.num_queries;
    const double inf = std::numeric_limits<double>::infinity();
    const double rmax =
        M == 0 ? 0.0 : thrust::transform_reduce(be.policy(), r, r + M, RadiusOrInf<T>{inf}, 0.0, thrust::maximum<double>());
    TORCH_CHECK_VALUE(rmax < inf, "radius must be finite and >= 0, got a negative, NaN or Inf entry");
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      auto p = prepare<T, D>(be, a);
      dispatch_metric<T>(p.wide(rmax), [&](auto metric) {
        using Metric = decltype(metric);
        Radii<T, Metric> radii{};
        radii.per_query = r;
        radii.R = 1;
        out = radius_search<1, Metric, T, D>(be, a, p, radii, max_neighbors)[0];
      });
    });
  });
  return {out.first, out.second};
}

template <class Backend>
std::vector<at::Tensor> radius_multi(Backend& be, const at::Tensor& points, const at::Tensor& perm,
                                     const at::Tensor& nodes, const at::Tensor& bounds, const at::Tensor& roots,
                                     const at::Tensor& queries, const at::Tensor& query_ptr,
                                     at::ArrayRef<double> radii_in, int64_t max_neighbors) {
  const TreeArgs a = check_tree_args(points, perm, nodes, bounds, roots, queries, query_ptr);
  check_max_neighbors(max_neighbors);
  TORCH_CHECK_VALUE(!radii_in.empty(), "radii must contain at least one radius");
  const int R = static_cast<int>(radii_in.size());
  std::vector<at::Tensor> flat(2 * R);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_radius_multi_gpu", [&] {
    using T = scalar_t;
    // Rounded to the points' dtype first, as a radius tensor would be, so each
    // result equals kdtree_radius's (and the CPU's).
    std::vector<T> r(R);
    for (int j = 0; j < R; ++j) {
      r[j] = static_cast<T>(radii_in[j]);
      TORCH_CHECK_VALUE(!NotFinite<T>()(r[j]), "radii must be finite in the points' dtype, got radii[", j, "] = ",
                        radii_in[j]);
      TORCH_CHECK_VALUE(r[j] >= 0, "radii must be >= 0, got radii[", j, "] = ", radii_in[j]);
    }
    std::vector<int> order(R);  // rank -> position in radii
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return r[x] < r[y]; });
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      auto p = prepare<T, D>(be, a);
      dispatch_metric<T>(p.wide(double(r[order[R - 1]])), [&](auto metric) {
        using Metric = decltype(metric);
        // Groups of up to kMaxRadii radii, one walk per query each.
        for (int g0 = 0; g0 < R; g0 += kMaxRadii) {
          const int G = std::min(R - g0, kMaxRadii);
          Radii<T, Metric> radii{};
          radii.per_query = nullptr;
          radii.R = G;
          for (int s = 0; s < G; ++s) radii.r2[s] = Metric::threshold(r[order[g0 + s]]);
          auto res = G == 1 ? radius_search<1, Metric, T, D>(be, a, p, radii, max_neighbors)
                            : radius_search<0, Metric, T, D>(be, a, p, radii, max_neighbors);
          for (int s = 0; s < G; ++s) {
            flat[2 * order[g0 + s]] = res[s].first;
            flat[2 * order[g0 + s] + 1] = res[s].second;
          }
        }
      });
    });
  });
  return flat;
}

// One kNN walk per query. The heap keys are doubles (the Metric's); with
// kLocal they live in per-thread arrays, else in `keys`, a (M, k) buffer: the
// distance output itself for float64 points, a double scratch for float32.
template <class M, class T, int D, bool kLocal>
struct KnnQuery {
  using K = typename M::Key;
  DeviceTree<T, D> tree;
  QueryMap qm;
  const T* queries;
  const int64_t* roots;
  int64_t k;
  K inf;
  T* dist;
  K* keys;
  int64_t* idx;
  int32_t* err;
  PYE_HD void operator()(int64_t j) const {
    const int64_t i = qm.query(j), b = qm.batch_of(i);
    T* dr = dist + i * k;
    int64_t* ir = idx + i * k;
    K local_d[kLocal ? kLocalHeap : 1];
    int64_t local_i[kLocal ? kLocalHeap : 1];
    K* hd = kLocal ? local_d : keys + i * k;
    int64_t* hi = kLocal ? local_i : ir;
    const int64_t n = nearest_walk<M, T, D>(tree, roots[b], queries + i * D, k, inf, hd, hi, err);
    if (n < 0) return;
    if (n != k) {
      err[kErrKnn] = 1;
      return;
    }
    // As the CPU: the distance in double, rounded once to the points' dtype.
    // (keys may alias dist: each entry is read before it is written.)
    for (int64_t m = 0; m < k; ++m) {
      const int64_t id = hi[m];
      dr[m] = static_cast<T>(M::distance(hd[m]));
      ir[m] = id;
    }
  }
};

template <class Backend>
std::tuple<at::Tensor, at::Tensor> knn(Backend& be, const at::Tensor& points, const at::Tensor& perm,
                                       const at::Tensor& nodes, const at::Tensor& bounds, const at::Tensor& roots,
                                       const at::Tensor& queries, const at::Tensor& query_ptr, int64_t k) {
  const TreeArgs a = check_tree_args(points, perm, nodes, bounds, roots, queries, query_ptr);
  TORCH_CHECK_VALUE(k >= 1, "k must be >= 1, got ", k);
  const int64_t M = a.num_queries;
  auto dist = at::empty({M, k}, a.points.options());
  auto idx = at::empty({M, k}, a.perm.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_knn_gpu", [&] {
    using T = scalar_t;
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      auto p = prepare<T, D>(be, a);
      // Every batch that has queries needs k points (its root's range).
      std::vector<int64_t> rows;
      for (int64_t b = 0; b < a.num_batches; ++b) rows.push_back(std::max<int64_t>(p.roots_host[b], 0));
      const auto root_rows = a.num_nodes > 0 && !rows.empty()
                                 ? a.nodes.index_select(0, host_to(rows, {int64_t(rows.size())}, a.nodes.device()))
                                       .to(at::kCPU)
                                 : at::empty({0, 4}, at::kLong);
      for (int64_t b = 0; b < a.num_batches; ++b) {
        if (p.qptr_host[b + 1] <= p.qptr_host[b]) continue;
        const int64_t* nd = root_rows.const_data_ptr<int64_t>() + 4 * b;
        const int64_t n = p.roots_host[b] < 0 ? 0 : nd[1] - nd[0];
        TORCH_CHECK_VALUE(n >= k, "k (", k, ") is larger than the number of points in batch ", b, " (", n, ")");
      }
      const double inf = std::numeric_limits<double>::infinity();
      const T* q = a.queries.const_data_ptr<T>();
      const int64_t* rt = a.roots.const_data_ptr<int64_t>();
      int32_t* err = p.err.template data_ptr<int32_t>();
      dispatch_metric<T>(p.wide(0.0), [&](auto metric) {
        using Metric = decltype(metric);
        if (k <= kLocalHeap) {
          for_n(be, M, KnnQuery<Metric, T, D, true>{p.tree, p.qm, q, rt, k, inf, dist.data_ptr<T>(), nullptr,
                                                    idx.data_ptr<int64_t>(), err});
        } else {
          at::Tensor scratch;
          double* keys;
          if constexpr (std::is_same_v<T, double>) {
            keys = dist.data_ptr<double>();
          } else {
            scratch = at::empty({M, k}, a.points.options().dtype(at::kDouble));
            keys = scratch.data_ptr<double>();
          }
          for_n(be, M, KnnQuery<Metric, T, D, false>{p.tree, p.qm, q, rt, k, inf, dist.data_ptr<T>(), keys,
                                                     idx.data_ptr<int64_t>(), err});
        }
      });
      check_walk_errors(p.err);
    });
  });
  return {dist, idx};
}

}  // namespace pyengine::neighbors::cuda
