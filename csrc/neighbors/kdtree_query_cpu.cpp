// CPU k-d tree queries: fixed radius (one radius per query, or several radii
// in one walk) and k nearest neighbors.
//
// Radius results are CSR and written without reallocation: a parallel count
// pass, a prefix sum into row_ptr, then a parallel fill pass that repeats the
// same walk (so it finds exactly the counted neighbors) and writes each row in
// place. With max_neighbors, one kNN-style walk per query instead (see
// capped_radius_search). Queries are independent, so rows and results never
// depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "neighbors/kdtree_search_cpu.h"
#include "neighbors/neighbors.h"

namespace pyengine::neighbors {
namespace {

using cpu::KnnScratch;
using cpu::Tree;

// Leaf scans read a copy of the points in tree order (each leaf contiguous)
// when there are enough queries to repay its O(N) gather; with fewer than one
// query per 32 points (measured crossover ~1/50 at N = 1e6..1e7) they read
// the points through perm instead.
constexpr int64_t kGatherPointsPerQuery = 32;

// Node ranges in [0, N], child ids both -1 (leaf) or both in [0, K), roots in
// [-1, K): whatever else is wrong with a tree, the walks then stay in bounds.
void check_tree_values(const TreeArgs& a) {
  const int64_t N = a.num_points, K = a.num_nodes;
  const int64_t* nodes = a.nodes.const_data_ptr<int64_t>();
  std::atomic<bool> ok{true};
  at::parallel_for(0, K, 1 << 14, [&](int64_t i0, int64_t i1) {
    bool good = true;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t* nd = nodes + 4 * i;
      good &= 0 <= nd[0] && nd[0] <= nd[1] && nd[1] <= N;
      good &= (nd[2] == -1 && nd[3] == -1) || (0 <= nd[2] && nd[2] < K && 0 <= nd[3] && nd[3] < K);
    }
    if (!good) ok.store(false, std::memory_order_relaxed);
  });
  TORCH_CHECK_VALUE(ok.load(), "nodes is not a valid k-d tree: every row needs 0 <= begin <= end <= N (", N,
                    ") and child ids both -1 (leaf) or both in [0, K) (K = ", K, ")");
  const int64_t* roots = a.roots.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < a.num_batches; ++b) {
    TORCH_CHECK_VALUE(-1 <= roots[b] && roots[b] < K, "roots must hold node ids in [0, K) or -1 (K = ", K,
                      "), got roots[", b, "] = ", roots[b]);
  }
  TORCH_CHECK_VALUE(a.num_batches > 0 || a.num_queries == 0, "queries need a batch, but roots is empty");
  // Structure: from the roots, every node is reached exactly once, and an inner node's
  // children split its range (tree_structure_ok, shared with the CUDA queries).
  TORCH_CHECK_VALUE(tree_structure_ok(nodes, K, roots, a.num_batches),
                    "nodes does not describe a tree: every node must be reached exactly once from the roots, and an inner "
                    "node's children must split its range in two (corrupt child ids)");
}

// Largest |x| over n values (0 for none).
template <class T>
T max_abs(const T* x, int64_t n) {
  std::vector<T> part(std::max<int64_t>(1, at::get_num_threads()), T(0));
  at::parallel_for(0, n, 1 << 16, [&](int64_t i0, int64_t i1) {
    T m = 0;
    for (int64_t i = i0; i < i1; ++i) m = std::max(m, std::abs(x[i]));
    T& slot = part[at::get_thread_num()];
    slot = std::max(slot, m);
  });
  return *std::max_element(part.begin(), part.end());
}

// Runs f(A{}) with the accumulator type of the distances (see kdtree_search_cpu.h):
// double for float points; for double points double while every coordinate and
// radius is at most 1e150 (so squares and their sums stay finite), long double
// beyond (its exponent range holds the square of any double).
template <class T, class F>
void dispatch_acc(const TreeArgs& a, double max_radius, const F& f) {
  if constexpr (std::is_same_v<T, float>) {
    f(double{});
  } else {
    constexpr double kSafe = 1e150;
    const bool wide = max_radius > kSafe ||
                      max_abs<T>(a.queries.const_data_ptr<T>(), a.num_queries * a.dim) > kSafe ||
                      max_abs<T>(a.points.const_data_ptr<T>(), a.num_points * a.dim) > kSafe;
    if (wide) {
      f((long double){});
    } else {
      f(double{});
    }
  }
}

template <class T>
void check_finite_queries(const TreeArgs& a) {
  const T* q = a.queries.const_data_ptr<T>();
  std::atomic<bool> ok{true};
  at::parallel_for(0, a.num_queries * a.dim, 1 << 16, [&](int64_t i0, int64_t i1) {
    bool good = true;
    for (int64_t i = i0; i < i1; ++i) good &= std::isfinite(q[i]);
    if (!good) ok.store(false, std::memory_order_relaxed);
  });
  TORCH_CHECK_VALUE(ok.load(), "queries contains NaN or Inf");
}

// The tree view over checked tensors; `gathered` keeps the tree-order copy alive.
template <class T, int D>
Tree<T, D> make_tree(const TreeArgs& a, at::Tensor& gathered) {
  check_tree_values(a);
  check_finite_queries<T>(a);
  const int64_t N = a.num_points;
  const T* points = a.points.const_data_ptr<T>();
  const int64_t* perm = a.perm.const_data_ptr<int64_t>();
  Tree<T, D> tree{a.nodes.const_data_ptr<int64_t>(), a.bounds.const_data_ptr<T>(), perm, points, false,
                  a.num_nodes, N};
  const bool gather = a.num_queries * kGatherPointsPerQuery >= N && N > 0;
  // (perm is always checked on the CPU, whatever the input-checks switch says.)
  // The perm range check rides along with the gather for free, so it runs
  // even with input checks off when gathering.
  T* g = nullptr;
  if (gather) {
    gathered = at::empty({N, D}, a.points.options());
    g = gathered.data_ptr<T>();
  }
  std::atomic<bool> ok{true};
  at::parallel_for(0, N, 1 << 14, [&](int64_t i0, int64_t i1) {
    bool good = true;
    for (int64_t i = i0; i < i1; ++i) {
      const bool in = static_cast<uint64_t>(perm[i]) < static_cast<uint64_t>(N);
      good &= in;
      if (g) std::copy_n(points + (in ? perm[i] : 0) * D, D, g + i * D);
    }
    if (!good) ok.store(false, std::memory_order_relaxed);
  });
  TORCH_CHECK_VALUE(ok.load(), "perm must hold point indices in [0, N) (N = ", N, ")");
  if (gather) {
    tree.coords = g;
    tree.gathered = true;
  }
  return tree;
}

// Runs f(std::integral_constant<int, D>) for the runtime dimension d in {2, 3}.
template <class F>
void dispatch_dim(int64_t d, const F& f) {
  if (d == 2) {
    f(std::integral_constant<int, 2>{});
  } else {
    f(std::integral_constant<int, 3>{});
  }
}

struct RadiusScratch {
  std::vector<int64_t> stack, hist, ids;
};

// The visitors of radius_walk. They copy their counters into locals around
// a scan: the compiler cannot keep a member in a register across the loop,
// since the int64 stores could alias perm.

// Count pass of one radius.
struct CountOne {
  int64_t n = 0;
  bool done() const { return false; }
  void all(int64_t begin, int64_t end) { n += end - begin; }
  template <class Rank>
  void scan(int64_t begin, int64_t end, const Rank& rank) {
    int64_t m = n;
    for (int64_t pos = begin; pos < end; ++pos) m += rank(pos) == 0;
    n = m;
  }
};

// Count pass of several radii: hist[t] points of rank t (hist[R]: outside).
struct CountRanks {
  int64_t* hist;
  bool done() const { return false; }
  void all(int64_t begin, int64_t end) { hist[0] += end - begin; }
  template <class Rank>
  void scan(int64_t begin, int64_t end, const Rank& rank) {
    for (int64_t pos = begin; pos < end; ++pos) ++hist[rank(pos)];
  }
};

// Fill pass of one radius: the ids inside, into buf (len + 1 slots). Every
// scanned point is stored at n and n advances only for those inside (no
// branch); the clamp keeps a walk that disagreed with the count in bounds,
// and the caller then checks n == len.
struct FillOne {
  const int64_t* perm;
  int64_t* buf;
  int64_t len, n = 0;
  bool done() const { return false; }
  void all(int64_t begin, int64_t end) {
    for (int64_t pos = begin; pos < end; ++pos) buf[std::min(n++, len)] = perm[pos];
  }
  template <class Rank>
  void scan(int64_t begin, int64_t end, const Rank& rank) {
    int64_t m = n;
    for (int64_t pos = begin; pos < end; ++pos) {
      const int64_t id = perm[pos];
      const bool inside = rank(pos) == 0;
      buf[std::min(m, len)] = id;
      m += inside;
    }
    n = m;
  }
};

// Fill pass of several radii: the points inside the largest (len of them,
// buf has len + 1 slots) as keys id << bits | rank, so that one sort of plain
// integers orders them by id for every radius at once.
struct FillRanks {
  const int64_t* perm;
  int64_t* buf;
  int64_t len;
  int R, bits;
  int64_t n = 0;
  bool done() const { return false; }
  void all(int64_t begin, int64_t end) {
    for (int64_t pos = begin; pos < end; ++pos) buf[std::min(n++, len)] = perm[pos] << bits;
  }
  template <class Rank>
  void scan(int64_t begin, int64_t end, const Rank& rank) {
    int64_t m = n;
    for (int64_t pos = begin; pos < end; ++pos) {
      const int t = rank(pos);
      buf[std::min(m, len)] = perm[pos] << bits | t;
      m += t < R;
    }
    n = m;
  }
};

// radius_search with a cap (max_neighbors > 0), into rp (R row pointers, rows
// i + 1 filled with the counts, still to be summed) and the returned cols.
// One walk per query: the cap nearest within the largest radius, a bounded
// max-heap that prunes with its current worst once full (nearest_walk, as
// kNN), sorted ascending by (distance, index). Radius t keeps the prefix of
// it within r2[t]: every point within r_t comes before every point beyond,
// so that prefix is exactly the min(count_t, cap) nearest within r_t (ties
// to the lower index), found by the same distance computation as uncapped.
// Each worker appends its rows' ids to its own buffer (memory in proportion
// to the output, whatever the cap), and a cheap pass copies them into place.
template <int kR, class A, class T, int D, class R2Of>
std::vector<at::Tensor> capped_radius_search(const Tree<T, D>& tree, const TreeArgs& a, int R, const R2Of& r2_of,
                                             int64_t cap, const std::vector<int64_t>& order,
                                             const std::vector<int64_t*>& rp) {
  const int64_t M = a.num_queries, B = a.num_batches;
  const T* queries = a.queries.const_data_ptr<T>();
  const int64_t* qp = a.query_ptr.const_data_ptr<int64_t>();
  const int64_t* roots = a.roots.const_data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> pool(std::max<int64_t>(1, cpu::query_workers(M)));
  std::vector<int64_t> where(M, 0);  // (offset in its worker's buffer) * pool.size() + worker
  const int64_t W = int64_t(pool.size());
  cpu::parallel_queries_w<KnnScratch<A>>(M, qp, B, order, [&](KnnScratch<A>& s, int64_t w, int64_t i, int64_t b) {
    A buf[1];
    const A* r2 = r2_of(i, buf);
    cpu::nearest_walk<A, T, D>(tree, roots[b], queries + i * D, cap, r2[R - 1], s);
    const auto& heap = s.heap;
    std::vector<int64_t>& ids = pool[w];
    if (ids.capacity() == 0) ids.reserve((M / W + 64) * std::min<int64_t>(cap, 64));  // typical caps: no regrowth
    const int64_t off = int64_t(ids.size()), n = int64_t(heap.size());
    where[i] = off * W + w;
    int64_t len = 0;
    for (int t = 0; t < R; ++t) {
      while (len < n && heap[len].d2 <= r2[t]) ++len;
      rp[t][i + 1] = len;
    }
    for (int64_t j = 0; j < n; ++j) ids.push_back(heap[j].id);
    if (kR == 1) std::sort(ids.begin() + off, ids.end());
  });
  std::vector<at::Tensor> col(R);
  std::vector<int64_t*> cl(R);
  for (int t = 0; t < R; ++t) {
    std::partial_sum(rp[t], rp[t] + M + 1, rp[t]);
    col[t] = at::empty({rp[t][M]}, a.perm.options());
    cl[t] = col[t].data_ptr<int64_t>();
  }
  at::parallel_for(0, M, 1024, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t* src = pool[where[i] % W].data() + where[i] / W;
      for (int t = 0; t < R; ++t) {
        int64_t* out = cl[t] + rp[t][i];
        const int64_t len = rp[t][i + 1] - rp[t][i];
        std::copy_n(src, len, out);
        if (kR != 1) std::sort(out, out + len);
      }
    }
  });
  return col;
}

// One radius search with R ascending radii per query (kR = R at compile time
// when > 0): r2_of(i, buf) returns query i's R squared radii (in buf or
// elsewhere). cap: max_neighbors or -1. Returns (row_ptr, col) per radius,
// smallest radius first.
//
// Without a cap the walks take whole nodes inside a radius without distances.
// With one, capped_radius_search does a single kNN-style walk per query.
template <int kR, class A, class T, int D, class R2Of>
std::vector<std::pair<at::Tensor, at::Tensor>> radius_search(const Tree<T, D>& tree, const TreeArgs& a, int R,
                                                             const R2Of& r2_of, int64_t cap) {
  const int64_t M = a.num_queries, B = a.num_batches;
  const T* queries = a.queries.const_data_ptr<T>();
  const int64_t* qp = a.query_ptr.const_data_ptr<int64_t>();
  const int64_t* roots = a.roots.const_data_ptr<int64_t>();
  const auto order = cpu::spatial_order<T, D>(tree, queries, qp, roots, B, M);
  // Several radii pack (point index, rank) in one int64 (FillRanks).
  int rank_bits = 1;
  while ((int64_t(1) << rank_bits) < R) ++rank_bits;
  TORCH_CHECK_VALUE(a.num_points < (int64_t(1) << (62 - rank_bits)), "too many points (", a.num_points,
                    ") for ", R, " radii in one search");
  std::vector<at::Tensor> row_ptr(R);
  std::vector<int64_t*> rp(R);
  for (int s = 0; s < R; ++s) {
    row_ptr[s] = at::zeros({M + 1}, a.perm.options());
    rp[s] = row_ptr[s].data_ptr<int64_t>();
  }

  if (cap > 0) {
    const auto col = capped_radius_search<kR, A, T, D>(tree, a, R, r2_of, cap, order, rp);
    std::vector<std::pair<at::Tensor, at::Tensor>> out(R);
    for (int s = 0; s < R; ++s) out[s] = {row_ptr[s], col[s]};
    return out;
  }

  // Uncapped: a count walk, then a fill walk that takes whole nodes inside a
  // radius without distances (cover) in both.
  cpu::parallel_queries<RadiusScratch>(M, qp, B, order, [&](RadiusScratch& s, int64_t i, int64_t b) {
    A buf[1];
    const A* r2 = r2_of(i, buf);
    const T* q = queries + i * D;
    if constexpr (kR == 1) {
      CountOne vis;
      cpu::radius_walk<kR, A, T, D>(tree, roots[b], q, r2, R, true, s.stack, vis);
      rp[0][i + 1] = vis.n;
    } else {
      s.hist.assign(R + 1, 0);
      CountRanks vis{s.hist.data()};
      cpu::radius_walk<kR, A, T, D>(tree, roots[b], q, r2, R, true, s.stack, vis);
      int64_t run = 0;
      for (int t = 0; t < R; ++t) {
        run += s.hist[t];
        rp[t][i + 1] = run;
      }
    }
  });

  std::vector<at::Tensor> col(R);
  std::vector<int64_t*> cl(R);
  for (int s = 0; s < R; ++s) {
    std::partial_sum(rp[s], rp[s] + M + 1, rp[s]);
    col[s] = at::empty({rp[s][M]}, a.perm.options());
    cl[s] = col[s].data_ptr<int64_t>();
  }

  cpu::parallel_queries<RadiusScratch>(M, qp, B, order, [&](RadiusScratch& s, int64_t i, int64_t b) {
    A buf[1];
    const A* r2 = r2_of(i, buf);
    const T* q = queries + i * D;
    if constexpr (kR == 1) {
      const int64_t len = rp[0][i + 1] - rp[0][i];
      if (int64_t(s.ids.size()) < len + 1) s.ids.resize(len + 1);
      FillOne vis{tree.perm, s.ids.data(), len};
      cpu::radius_walk<kR, A, T, D>(tree, roots[b], q, r2, R, true, s.stack, vis);
      TORCH_INTERNAL_ASSERT(vis.n == len, "kdtree radius: fill found ", vis.n, " neighbors, counted ", len);
      int64_t* out = cl[0] + rp[0][i];
      std::copy_n(s.ids.data(), len, out);
      std::sort(out, out + len);
    } else {
      const int64_t len = rp[R - 1][i + 1] - rp[R - 1][i];
      if (int64_t(s.ids.size()) < 2 * (len + 1)) s.ids.resize(2 * (len + 1));
      int64_t* keys = s.ids.data();
      int64_t* tmp = keys + len + 1;
      FillRanks vis{tree.perm, keys, len, R, rank_bits};
      cpu::radius_walk<kR, A, T, D>(tree, roots[b], q, r2, R, true, s.stack, vis);
      TORCH_INTERNAL_ASSERT(vis.n == len, "kdtree radius: fill found ", vis.n, " neighbors, counted ", len);
      std::sort(keys, keys + len);
      const int64_t mask = (int64_t(1) << rank_bits) - 1;
      for (int t = 0; t < R; ++t) {
        // Keys of rank <= t, in id order; compacted without a branch.
        int64_t m = 0;
        for (int64_t j = 0; j < len; ++j) {
          tmp[m] = keys[j] >> rank_bits;
          m += (keys[j] & mask) <= t;
        }
        TORCH_INTERNAL_ASSERT(m == rp[t][i + 1] - rp[t][i], "kdtree radius: fill disagrees with the count");
        std::copy_n(tmp, m, cl[t] + rp[t][i]);
      }
    }
  });

  std::vector<std::pair<at::Tensor, at::Tensor>> out(R);
  for (int s = 0; s < R; ++s) out[s] = {row_ptr[s], col[s]};
  return out;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> kdtree_radius_cpu(const at::Tensor& points, const at::Tensor& perm,
                                                     const at::Tensor& nodes, const at::Tensor& bounds,
                                                     const at::Tensor& roots, const at::Tensor& queries,
                                                     const at::Tensor& query_ptr, const at::Tensor& radius_in,
                                                     int64_t max_neighbors) {
  const TreeArgs a = check_tree_args(points, perm, nodes, bounds, roots, queries, query_ptr);
  check_max_neighbors(max_neighbors);
  check_dim(radius_in, 1, "radius");
  check_same_dtype(radius_in, "radius", points, "points");
  check_same_device(radius_in, "radius", points, "points");
  TORCH_CHECK_VALUE(radius_in.size(0) == a.num_queries, "radius must have one entry per query (", a.num_queries,
                    "), got ", radius_in.size(0));
  const auto radius = radius_in.contiguous();
  std::pair<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_radius", [&] {
    using T = scalar_t;
    const T* r = radius.const_data_ptr<T>();
    bool finite = true, nonneg = true;
    for (int64_t i = 0; i < a.num_queries; ++i) {
      finite &= std::isfinite(r[i]);
      nonneg &= r[i] >= 0;
    }
    TORCH_CHECK_VALUE(finite, "radius must be finite, got NaN or Inf");
    TORCH_CHECK_VALUE(nonneg, "radius must be >= 0, got a negative entry");
    const double rmax = double(max_abs<T>(r, a.num_queries));
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      at::Tensor gathered;
      const auto tree = make_tree<T, D>(a, gathered);
      dispatch_acc<T>(a, rmax, [&](auto acc) {
        using A = decltype(acc);
        const auto r2_of = [r](int64_t i, A* buf) -> const A* {
          buf[0] = A(r[i]) * A(r[i]);
          return buf;
        };
        out = radius_search<1, A, T, D>(tree, a, 1, r2_of, max_neighbors)[0];
      });
    });
  });
  return {out.first, out.second};
}

std::vector<at::Tensor> kdtree_radius_multi_cpu(const at::Tensor& points, const at::Tensor& perm,
                                                const at::Tensor& nodes, const at::Tensor& bounds,
                                                const at::Tensor& roots, const at::Tensor& queries,
                                                const at::Tensor& query_ptr, at::ArrayRef<double> radii,
                                                int64_t max_neighbors) {
  const TreeArgs a = check_tree_args(points, perm, nodes, bounds, roots, queries, query_ptr);
  check_max_neighbors(max_neighbors);
  TORCH_CHECK_VALUE(!radii.empty(), "radii must contain at least one radius");
  const int R = static_cast<int>(radii.size());
  std::vector<at::Tensor> flat(2 * R);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_radius_multi", [&] {
    using T = scalar_t;
    // Each radius rounded to the points' dtype first, exactly as a radius
    // tensor of that dtype would be, so every result equals kdtree_radius's.
    std::vector<T> r(R);
    for (int j = 0; j < R; ++j) {
      r[j] = static_cast<T>(radii[j]);
      TORCH_CHECK_VALUE(std::isfinite(r[j]), "radii must be finite in the points' dtype, got radii[", j,
                        "] = ", radii[j]);
      TORCH_CHECK_VALUE(r[j] >= 0, "radii must be >= 0, got radii[", j, "] = ", radii[j]);
    }
    std::vector<int> order(R);  // rank -> position in radii
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return r[x] < r[y]; });
    const double rmax = double(r[order[R - 1]]);
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      at::Tensor gathered;
      const auto tree = make_tree<T, D>(a, gathered);
      dispatch_acc<T>(a, rmax, [&](auto acc) {
        using A = decltype(acc);
        std::vector<A> r2(R);
        for (int s = 0; s < R; ++s) r2[s] = A(r[order[s]]) * A(r[order[s]]);
        const A* r2p = r2.data();
        const auto r2_of = [r2p](int64_t, A*) { return r2p; };
        auto res = R == 1 ? radius_search<1, A, T, D>(tree, a, R, r2_of, max_neighbors)
                          : radius_search<0, A, T, D>(tree, a, R, r2_of, max_neighbors);
        for (int s = 0; s < R; ++s) {
          flat[2 * order[s]] = res[s].first;
          flat[2 * order[s] + 1] = res[s].second;
        }
      });
    });
  });
  return flat;
}

std::tuple<at::Tensor, at::Tensor> kdtree_knn_cpu(const at::Tensor& points, const at::Tensor& perm,
                                                  const at::Tensor& nodes, const at::Tensor& bounds,
                                                  const at::Tensor& roots, const at::Tensor& queries,
                                                  const at::Tensor& query_ptr, int64_t k) {
  const TreeArgs a = check_tree_args(points, perm, nodes, bounds, roots, queries, query_ptr);
  TORCH_CHECK_VALUE(k >= 1, "k must be >= 1, got ", k);
  const int64_t M = a.num_queries;
  auto dist = at::empty({M, k}, a.points.options());
  auto idx = at::empty({M, k}, a.perm.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_knn", [&] {
    using T = scalar_t;
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      at::Tensor gathered;
      const auto tree = make_tree<T, D>(a, gathered);
      // Every batch that has queries needs k points (the root's range).
      const int64_t* qp = a.query_ptr.const_data_ptr<int64_t>();
      const int64_t* rt = a.roots.const_data_ptr<int64_t>();
      for (int64_t b = 0; b < a.num_batches; ++b) {
        if (qp[b + 1] <= qp[b]) continue;
        const int64_t n = rt[b] < 0 ? 0 : tree.node(rt[b])[1] - tree.node(rt[b])[0];
        TORCH_CHECK_VALUE(n >= k, "k (", k, ") is larger than the number of points in batch ", b, " (", n, ")");
      }
      const T* q = a.queries.const_data_ptr<T>();
      T* dp = dist.data_ptr<T>();
      int64_t* ip = idx.data_ptr<int64_t>();
      const auto order = cpu::spatial_order<T, D>(tree, q, qp, rt, a.num_batches, M);
      dispatch_acc<T>(a, 0.0, [&](auto acc) {
        using A = decltype(acc);
        const A inf = std::numeric_limits<A>::infinity();
        cpu::parallel_queries<KnnScratch<A>>(M, qp, a.num_batches, order, [&](KnnScratch<A>& s, int64_t i, int64_t b) {
          cpu::nearest_walk<A, T, D>(tree, rt[b], q + i * D, k, inf, s);
          TORCH_CHECK_VALUE(int64_t(s.heap.size()) == k, "k (", k, ") is larger than the number of points in batch ",
                            b, " (the tree holds ", s.heap.size(), ")");
          for (int64_t j = 0; j < k; ++j) {
            // A distance beyond T's range (only between points near +-max) is inf, as it should be.
            dp[i * k + j] = static_cast<T>(std::sqrt(s.heap[j].d2));
            ip[i * k + j] = s.heap[j].id;
          }
        });
      });
    });
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("kdtree_build", &kdtree_build_cpu);
  m.impl("kdtree_radius", &kdtree_radius_cpu);
  m.impl("kdtree_radius_multi", &kdtree_radius_multi_cpu);
  m.impl("kdtree_knn", &kdtree_knn_cpu);
}

}  // namespace pyengine::neighbors
