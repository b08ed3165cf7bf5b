#pragma once
// CPU k-d tree walks shared by the radius and kNN queries.
//
// Distances are squared and computed in an accumulator type A at least as wide
// as the points' dtype T (double for float points; double, or long double when
// the magnitudes could overflow a double's square, for double points), summing
// the coordinates in order: d2 = ((q0-p0)^2 + (q1-p1)^2) + (q2-p2)^2. Squares of
// finite float coordinates never overflow or underflow in double, so a float
// radius whose square exceeds the float range does not turn into inf (which
// took every point), and far but finite points never get distance inf. The box
// distances go through the same function with a point of the box (the nearest
// or farthest corner), and IEEE rounding is monotone, so a point of a box is
// never nearer than the box's lower bound nor farther than its upper bound:
// pruning and whole-node acceptance agree exactly with the per-point test.
//
// Duplicates: a node whose box is a single point holds identical points, all at
// the same distance. The kNN walk takes such a subtree leaf by leaf in id order
// (the build splits identical points by index, so its leaves hold increasing
// index blocks) and stops as soon as a leaf cannot beat the current k-th
// candidate, so n identical points cost O(k + leaf + log n) per query instead
// of O(n).
#include <ATen/Parallel.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace pyengine::neighbors::cpu {

template <class A, class T, int D>
C10_ALWAYS_INLINE A dist2(const T* a, const T* b) {
  A s = 0;
  for (int k = 0; k < D; ++k) {
    const A t = A(a[k]) - A(b[k]);
    s += t * t;
  }
  return s;
}

// Squared distance from q to the nearest point of box (lo row, then hi row).
template <class A, class T, int D>
C10_ALWAYS_INLINE A box_near2(const T* q, const T* box) {
  T n[D];
  for (int k = 0; k < D; ++k) n[k] = std::min(std::max(q[k], box[k]), box[D + k]);
  return dist2<A, T, D>(q, n);
}

// Squared distance from q to the farthest corner of the box.
template <class A, class T, int D>
C10_ALWAYS_INLINE A box_far2(const T* q, const T* box) {
  T f[D];
  for (int k = 0; k < D; ++k) {
    f[k] = std::abs(A(q[k]) - A(box[k])) >= std::abs(A(q[k]) - A(box[D + k])) ? box[k] : box[D + k];
  }
  return dist2<A, T, D>(q, f);
}

// Whether the box is a single point (all the node's points are identical).
template <class T, int D>
C10_ALWAYS_INLINE bool box_is_point(const T* box) {
  bool same = true;
  for (int k = 0; k < D; ++k) same &= box[k] == box[D + k];
  return same;
}

// Number of the ascending r2[0..R) that d exceeds: the rank of the first
// radius holding d, R if none. Branch-free (the outcome is a coin toss).
template <int kR, class T>
C10_ALWAYS_INLINE int rank_of(T d, const T* r2, int R) {
  if constexpr (kR == 1) {
    return static_cast<int>(d > r2[0]);
  } else {
    int t = 0;
    for (int s = 0; s < R; ++s) t += d > r2[s];
    return t;
  }
}

// Read-only view of a validated tree. Leaf scans read coordinates either from
// a copy in tree order (contiguous per leaf; worth its O(N) gather when there
// are many queries) or straight from points through perm (few queries).
template <class T, int D>
struct Tree {
  const int64_t* nodes;  // (K, 4): begin, end, left, right
  const T* bounds;       // (K, 2, D)
  const int64_t* perm;   // (N,)
  const T* coords;       // gathered: (N, D) in tree order; else points (N, D)
  bool gathered;
  int64_t num_nodes, num_points;

  const int64_t* node(int64_t i) const { return nodes + 4 * i; }
  const T* box(int64_t i) const { return bounds + 2 * D * i; }
  // Without the gather perm may be unchecked (input checks off): an id out of
  // range then reads point 0, a wrong answer for a wrong input but no crash.
  const T* point(int64_t pos, int64_t id) const {
    if (gathered) return coords + pos * D;
    return coords + (static_cast<uint64_t>(id) < static_cast<uint64_t>(num_points) ? id : 0) * D;
  }
};

// A valid tree reaches each node once per walk; more visits than nodes means
// the child ids form a cycle or a DAG, and the walk must stop instead of looping.
inline void count_visit(int64_t& visits, int64_t num_nodes) {
  TORCH_CHECK_VALUE(++visits <= num_nodes,
                    "nodes does not describe a tree: a node is reachable twice from a root (corrupt child ids)");
}

// Visits the points within the largest of the ascending squared radii
// r2[0..R) of q (R = kR when kR > 0), distances in A. A scanned range goes to
// vis.scan(begin, end, rank) where rank(pos) is the point's rank t: the first
// radius holding it, R if none (visitors then drop it, without a branch).
// With cover, a node whose box lies inside radius c is scanned whole with
// ranks capped at c instead of descending, and vis.all(begin, end) takes one
// inside the smallest radius without any distance.
// Visitor: bool done() (stop early), all(begin, end), scan(begin, end, rank).
template <int kR, class A, class T, int D, class Visitor>
void radius_walk(const Tree<T, D>& tree, int64_t root, const T* q, const A* r2, int R, bool cover,
                 std::vector<int64_t>& stack, Visitor& vis) {
  if (kR > 0) R = kR;
  const A rmax = r2[R - 1];
  if (root < 0 || box_near2<A, T, D>(q, tree.box(root)) > rmax) return;
  int64_t visits = 0;
  stack.clear();
  stack.push_back(root);
  while (!stack.empty() && !vis.done()) {
    const int64_t node = stack.back();
    stack.pop_back();
    count_visit(visits, tree.num_nodes);
    const int64_t* nd = tree.node(node);
    const int c = cover ? rank_of<kR>(box_far2<A, T, D>(q, tree.box(node)), r2, R) : R;
    if (c == 0) {
      vis.all(nd[0], nd[1]);
    } else if (c < R || nd[2] < 0) {
      vis.scan(nd[0], nd[1], [&](int64_t pos) {
        return std::min(c, rank_of<kR>(dist2<A, T, D>(q, tree.point(pos, tree.perm[pos])), r2, R));
      });
    } else {
      // Children are tested here so that only the ones that reach the ball are pushed.
      if (box_near2<A, T, D>(q, tree.box(nd[3])) <= rmax) stack.push_back(nd[3]);
      if (box_near2<A, T, D>(q, tree.box(nd[2])) <= rmax) stack.push_back(nd[2]);
    }
  }
}

// A candidate neighbor; the order is distance, then point index (ties go to
// the lower index everywhere).
template <class A>
struct Cand {
  A d2;
  int64_t id;
  bool operator<(const Cand& o) const { return d2 < o.d2 || (d2 == o.d2 && id < o.id); }
};

template <class A>
struct KnnScratch {
  std::vector<std::pair<int64_t, A>> stack;  // node, squared distance to its box
  std::vector<Cand<A>> heap;                 // max-heap of the best candidates so far
  std::vector<int64_t> dup;                  // leaf stack of a subtree of identical points
};

// Offers candidate c to the bounded max-heap of the k best within bound2.
template <class A>
C10_ALWAYS_INLINE void offer(std::vector<Cand<A>>& heap, int64_t k, A bound2, const Cand<A>& c) {
  if (int64_t(heap.size()) < k) {
    if (c.d2 <= bound2) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end());
    }
  } else if (c < heap.front()) {
    // Replace the worst: one sift-down (std::pop_heap + push_heap would sift twice).
    Cand<A>* h = heap.data();
    const int64_t n = int64_t(heap.size());
    int64_t i = 0;
    for (int64_t l = 1; l < n; l = 2 * i + 1) {
      const int64_t m = l + 1 < n && h[l] < h[l + 1] ? l + 1 : l;
      if (!(c < h[m])) break;
      h[i] = h[m];
      i = m;
    }
    h[i] = c;
  }
}

// The part of nearest_walk for an inner node whose points are all identical
// (at squared distance d of q): its leaves in pre-order, which the build fills
// with increasing index blocks (identical points are split by index), until a
// leaf's smallest index cannot beat the k-th candidate. For a tree not built
// that way the answer keeps its distances, and only the choice among equally
// distant points may differ.
template <class A, class T, int D>
void nearest_identical(const Tree<T, D>& tree, int64_t node, A d, int64_t k, A bound2, KnnScratch<A>& s) {
  auto& heap = s.heap;
  auto& stack = s.dup;
  stack.clear();
  stack.push_back(node);
  while (!stack.empty()) {
    const int64_t* nd = tree.node(stack.back());
    stack.pop_back();
    if (nd[2] >= 0) {
      stack.push_back(nd[3]);
      stack.push_back(nd[2]);
      continue;
    }
    if (int64_t(heap.size()) == k) {
      int64_t lo = INT64_MAX;
      for (int64_t pos = nd[0]; pos < nd[1]; ++pos) lo = std::min(lo, tree.perm[pos]);
      if (!(Cand<A>{d, lo} < heap.front())) return;
    }
    for (int64_t pos = nd[0]; pos < nd[1]; ++pos) offer(heap, k, bound2, Cand<A>{d, tree.perm[pos]});
  }
}

// The k nearest points of q with d2 <= bound2 (all of them if fewer), sorted
// ascending into s.heap. Depth-first, nearer child first, and a node is
// skipped once its box is farther than the current k-th candidate.
template <class A, class T, int D>
void nearest_walk(const Tree<T, D>& tree, int64_t root, const T* q, int64_t k, A bound2, KnnScratch<A>& s) {
  auto& heap = s.heap;
  auto& stack = s.stack;
  heap.clear();
  stack.clear();
  if (root < 0) return;
  int64_t visits = 0;
  const A root_near = box_near2<A, T, D>(q, tree.box(root));
  if (root_near <= bound2) stack.push_back({root, root_near});
  while (!stack.empty()) {
    const auto [node, near] = stack.back();
    stack.pop_back();
    count_visit(visits, tree.num_nodes);
    const bool full = int64_t(heap.size()) == k;
    if (near > (full ? heap.front().d2 : bound2)) continue;
    const int64_t* nd = tree.node(node);
    if (nd[2] < 0) {
      // Distances of a chunk of the leaf first (a loop without branches, which
      // vectorises), then only the points within the current worst go to offer,
      // which decides exactly (the worst only shrinks while the leaf is offered).
      constexpr int64_t kChunk = 32;
      A d2[kChunk];
      for (int64_t p0 = nd[0]; p0 < nd[1]; p0 += kChunk) {
        const int64_t n = std::min(kChunk, nd[1] - p0);
        if (tree.gathered) {
          const T* base = tree.coords + p0 * D;
          for (int64_t j = 0; j < n; ++j) d2[j] = dist2<A, T, D>(q, base + j * D);
        } else {
          for (int64_t j = 0; j < n; ++j) d2[j] = dist2<A, T, D>(q, tree.point(p0 + j, tree.perm[p0 + j]));
        }
        for (int64_t j = 0; j < n; ++j) {
          const A worst = int64_t(heap.size()) == k ? heap.front().d2 : bound2;
          if (d2[j] <= worst) offer(heap, k, bound2, Cand<A>{d2[j], tree.perm[p0 + j]});
        }
      }
      continue;
    }
    if (box_is_point<T, D>(tree.box(node))) {
      // near is every point's distance: the box is the point (same computation).
      nearest_identical<A, T, D>(tree, node, near, k, bound2, s);
      continue;
    }
    const A worst = int64_t(heap.size()) == k ? heap.front().d2 : bound2;
    int64_t a = nd[2], b = nd[3];
    A da = box_near2<A, T, D>(q, tree.box(a)), db = box_near2<A, T, D>(q, tree.box(b));
    if (db < da) {
      std::swap(a, b);
      std::swap(da, db);
    }
    // Pushed far first so the near child is walked first and tightens the bound.
    if (db <= worst) stack.push_back({b, db});
    if (da <= worst) stack.push_back({a, da});
  }
  std::sort_heap(heap.begin(), heap.end());
}

// Processing order of the queries: each batch's queries sorted by a coarse
// Morton (Z-order) code in the batch's root box, so consecutive queries walk
// the same nodes and leaves while those are still in cache (queries often come
// in random order). Only the order of work changes; each query still writes
// its own row. Empty when no batch is worth sorting.
template <class T, int D>
std::vector<int64_t> spatial_order(const Tree<T, D>& tree, const T* queries, const int64_t* query_ptr,
                                   const int64_t* roots, int64_t B, int64_t M) {
  constexpr int64_t kMinSorted = 1024;  // smaller batches stay in cache anyway
  bool valid = query_ptr[0] == 0 && query_ptr[B] == M;
  bool worth = false;
  for (int64_t b = 0; b < B; ++b) {
    valid &= query_ptr[b] <= query_ptr[b + 1];
    worth |= query_ptr[b + 1] - query_ptr[b] >= kMinSorted && roots[b] >= 0;
  }
  if (!valid || !worth) return {};  // (a malformed query_ptr, with input checks off)
  std::vector<int64_t> order(M);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<uint32_t> code;
    std::vector<int64_t> bucket;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t q0 = query_ptr[b], m = query_ptr[b + 1] - q0;
      int64_t* out = order.data() + q0;
      if (m < kMinSorted || roots[b] < 0) {
        for (int64_t j = 0; j < m; ++j) out[j] = q0 + j;
        continue;
      }
      // About 4 queries per cell: finer buys nothing, coarser loses locality.
      int bits = 1;
      while (bits < 10 && (int64_t(1) << (D * (bits + 1))) <= m / 4) ++bits;
      const int64_t cells = int64_t(1) << (D * bits);
      const T* box = tree.box(roots[b]);
      T scale[D];
      for (int k = 0; k < D; ++k) {
        const T w = box[D + k] - box[k];
        scale[k] = w > 0 ? T(int64_t(1) << bits) / w : T(0);  // cells per unit length
      }
      code.resize(m);
      bucket.assign(cells + 1, 0);
      for (int64_t j = 0; j < m; ++j) {
        const T* q = queries + (q0 + j) * D;
        uint32_t c = 0;
        for (int k = 0; k < D; ++k) {
          // Clamped in T, before the integer conversion (queries may lie outside the box).
          const T f = std::min(std::max((q[k] - box[k]) * scale[k], T(0)), T((1 << bits) - 1));
          const uint32_t cell = static_cast<uint32_t>(f);
          for (int bit = 0; bit < bits; ++bit) c |= ((cell >> bit) & 1u) << (D * bit + k);
        }
        code[j] = c;
        ++bucket[c + 1];
      }
      std::partial_sum(bucket.begin(), bucket.end(), bucket.begin());
      for (int64_t j = 0; j < m; ++j) out[bucket[code[j]]++] = q0 + j;
    }
  });
  return order;
}

// The number of workers parallel_queries runs (at most at::get_num_threads()).
inline int64_t query_workers(int64_t M) {
  constexpr int64_t kBlock = 64;
  return std::min<int64_t>(at::get_num_threads(), (M + kBlock - 1) / kBlock);
}

// body(scratch, w, i, b) for every query i with its batch b, in parallel, in
// the given order (positions of batch b are query_ptr[b]..query_ptr[b+1], as
// spatial_order keeps them) or in index order when order is empty. Blocks of
// queries are handed out dynamically, since query cost varies with the local
// density (clustered clouds); each worker w in [0, query_workers(M)) keeps one
// Scratch, and no two calls with the same w run at the same time.
template <class Scratch, class Body>
void parallel_queries_w(int64_t M, const int64_t* query_ptr, int64_t B, const std::vector<int64_t>& order,
                        const Body& body) {
  if (M == 0 || B == 0) return;
  constexpr int64_t kBlock = 64;
  const int64_t num_blocks = (M + kBlock - 1) / kBlock;
  const int64_t num_workers = query_workers(M);
  const int64_t* ord = order.empty() ? nullptr : order.data();
  std::atomic<int64_t> next{0};
  // Each call of the lambda gets a disjoint [w0, w1): w0 names its worker.
  at::parallel_for(0, num_workers, 1, [&](int64_t w0, int64_t) {
    Scratch scratch;
    for (int64_t blk = next.fetch_add(1); blk < num_blocks; blk = next.fetch_add(1)) {
      const int64_t j0 = blk * kBlock, j1 = std::min(M, j0 + kBlock);
      // Last batch starting at or before j0; clamped so a malformed query_ptr
      // (checks disabled) can only misassign batches, never index out of range.
      int64_t b = std::upper_bound(query_ptr, query_ptr + B + 1, j0) - query_ptr - 1;
      b = std::min(std::max<int64_t>(b, 0), B - 1);
      for (int64_t j = j0; j < j1; ++j) {
        while (b + 1 < B && query_ptr[b + 1] <= j) ++b;
        body(scratch, w0, ord ? ord[j] : j, b);
      }
    }
  });
}

// parallel_queries_w without the worker id: body(scratch, i, b).
template <class Scratch, class Body>
void parallel_queries(int64_t M, const int64_t* query_ptr, int64_t B, const std::vector<int64_t>& order,
                      const Body& body) {
  parallel_queries_w<Scratch>(M, query_ptr, B, order,
                              [&](Scratch& s, int64_t, int64_t i, int64_t b) { body(s, i, b); });
}

}  // namespace pyengine::neighbors::cpu
