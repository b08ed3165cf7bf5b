#pragma once
// Per-thread k-d tree walks of the GPU queries: one thread walks the tree for
// one query with a fixed-size stack. Plain __host__ __device__ code with no
// CUDA-only constructs, so the same walks also compile for the host (see
// kdtree_cuda.cuh on why that matters).
//
// The arithmetic reproduces the CPU walks (kdtree_search_cpu.h): distances
// compared in the CPU's wide type (double; see the Metrics below for float64
// points beyond 1e150, where the CPU uses long double), summed in coordinate
// order with every product and sum rounded separately (nvcc would otherwise
// contract them into FMAs, and points exactly at the radius would then fall
// differently on the two devices), the same box bounds, the same (distance,
// index) order, the same duplicate-aware kNN walk.
//
// Per-thread memory: the keys are doubles for both point dtypes, so the
// float32 walks now hold what the float64 walks always held (stack of 64 int32
// node ids + 64 double keys, and kNN heaps of kLocalHeap (double, int64)
// pairs in local memory); no shared memory, and no new per-thread arrays.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace pyengine::neighbors::cuda {

// Walk stack entries. A median-split tree over N points is ceil(log2 N) deep
// and a depth-first walk holds at most one pending sibling per level, so 64
// covers any tree kdtree_build makes; a deeper (hand-made) tree sets kErrStack.
constexpr int kStack = 64;
// Radii handled by one multi-radius walk; more are searched in groups.
constexpr int kMaxRadii = 8;
// kNN heaps up to this size live in per-thread local arrays; larger k keeps
// the heap in the output rows (float32 points: in a double scratch of the
// same shape, since the keys are doubles).
constexpr int kLocalHeap = 32;

// Error slots written by the walks (any thread, plain stores of 1).
enum WalkError : int { kErrCycle = 0, kErrStack = 1, kErrFill = 2, kErrKnn = 3, kNumErrors = 4 };

PYE_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PYE_HD double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
PYE_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PYE_HD double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// std::min / std::max semantics (first argument on ties), as on the CPU.
template <class T>
PYE_HD T min_of(T a, T b) {
  return b < a ? b : a;
}
template <class T>
PYE_HD T max_of(T a, T b) {
  return a < b ? b : a;
}

// Distance keys. The walks compare a key per point (and per box, through a
// point of the box) with thresholds and with each other; a Metric says what
// the key is, in the CPU's wide types (kdtree_search_cpu.h) so that far but
// finite points never compare as inf and tiny distances never as 0:
//
// * SqDist: the squared distance in double, summed in coordinate order with
//   every product and sum rounded separately (no FMA), exactly the CPU's
//   dist2<double>. Used for float32 points always (squares of finite floats
//   never overflow or underflow in double) and for float64 points while every
//   coordinate and radius is at most kWideAbove, as on the CPU: the two devices
//   then give bit-identical keys, so the same answers with the same ties.
// * NormDist: the distance itself, for float64 points beyond kWideAbove, where
//   the CPU compares squares in long double (no long double on a GPU, and a
//   double's square would overflow or underflow). The differences are scaled
//   by a power of two, 2^-e with e the exponent of the largest, which is
//   exact; their squares are summed in [1, 12) and key = sqrt(sum) 2^e. This
//   is the double computation of sqrt(sum t^2) with an unbounded exponent, so
//   it is finite for any distance below DBL_MAX, keeps 1e-300 apart from 0,
//   and is monotone in every |difference| (IEEE rounding and sqrt are
//   monotone), which keeps box pruning exact. It can tie two distances the
//   long double squares tell apart (within one double ulp): only the order of
//   such near-ties may differ from the CPU, as with any rounding difference.
//
// Key thresholds: SqDist r^2 in double (as the CPU, r rounded to the points'
// dtype first), NormDist r itself.
constexpr double kWideAbove = 1e150;  // the CPU's switch to long double (kdtree_query_cpu.cpp)

PYE_HD double abs_of(double x) { return x < 0 ? -x : x; }

struct SqDist {
  using Key = double;
  template <class T, int D>
  PYE_HD static double key(const T* a, const T* b) {
    double s = 0;
#pragma unroll
    for (int k = 0; k < D; ++k) {
      const double t = double(a[k]) - double(b[k]);
      s = add_rn(s, mul_rn(t, t));
    }
    return s;
  }
  template <class T>
  PYE_HD static double threshold(T r) {
    return mul_rn(double(r), double(r));
  }
  PYE_HD static double distance(double key) { return std::sqrt(key); }
  // Whether lo is at least as far from q as hi along one side (the CPU's test, in double).
  template <class T>
  PYE_HD static bool lo_farther(T q, T lo, T hi) {
    return abs_of(double(q) - double(lo)) >= abs_of(double(q) - double(hi));
  }
};

struct NormDist {
  using Key = double;
  template <class T, int D>
  PYE_HD static double key(const T* a, const T* b) {
    static_assert(sizeof(T) == sizeof(double), "NormDist is for float64 points");
    double t[D];
    double m = 0;
#pragma unroll
    for (int k = 0; k < D; ++k) {
      t[k] = a[k] - b[k];
      m = max_of(m, abs_of(t[k]));
    }
    int extra = 0;
    if (!(m <= 1.7976931348623157e308)) {  // a difference overflowed: halve (exact, the same rounding)
      extra = 1;
      m = 0;
#pragma unroll
      for (int k = 0; k < D; ++k) {
        t[k] = mul_rn(double(a[k]), 0.5) - mul_rn(double(b[k]), 0.5);
        m = max_of(m, abs_of(t[k]));
      }
    }
    if (m == 0) return 0;
    const int e = ::ilogb(m);
    double s = 0;
#pragma unroll
    for (int k = 0; k < D; ++k) {
      const double u = ::scalbn(t[k], -e);
      s = add_rn(s, mul_rn(u, u));
    }
    return ::scalbn(std::sqrt(s), e + extra);
  }
  template <class T>
  PYE_HD static double threshold(T r) {
    return double(r);
  }
  PYE_HD static double distance(double key) { return key; }
  // In halves, which cannot overflow.
  template <class T>
  PYE_HD static bool lo_farther(T q, T lo, T hi) {
    const double h = mul_rn(double(q), 0.5);
    return abs_of(h - mul_rn(double(lo), 0.5)) >= abs_of(h - mul_rn(double(hi), 0.5));
  }
};

// Key from q to the nearest point of box (lo row, then hi row).
template <class M, class T, int D>
PYE_HD typename M::Key box_near(const T* q, const T* box) {
  T n[D];
#pragma unroll
  for (int k = 0; k < D; ++k) n[k] = min_of(max_of(q[k], box[k]), box[D + k]);
  return M::template key<T, D>(q, n);
}

// Key from q to the farthest corner of the box.
template <class M, class T, int D>
PYE_HD typename M::Key box_far(const T* q, const T* box) {
  T f[D];
#pragma unroll
  for (int k = 0; k < D; ++k) f[k] = M::lo_farther(q[k], box[k], box[D + k]) ? box[k] : box[D + k];
  return M::template key<T, D>(q, f);
}

// Whether the box is a single point (all the node's points are identical).
template <class T, int D>
PYE_HD bool box_is_point(const T* box) {
  bool same = true;
#pragma unroll
  for (int k = 0; k < D; ++k) same = same && box[k] == box[D + k];
  return same;
}

// Number of the ascending r2[0..R) that d exceeds (R if none holds d).
template <int kR, class T>
PYE_HD int rank_of(T d, const T* r2, int R) {
  if constexpr (kR == 1) {
    return static_cast<int>(d > r2[0]);
  } else {
    int t = 0;
    for (int s = 0; s < R; ++s) t += d > r2[s];
    return t;
  }
}

// A validated tree on the device; coords are the points gathered in tree
// order (each leaf contiguous).
template <class T, int D>
struct DeviceTree {
  const int64_t* nodes;  // (K, 4): begin, end, left, right
  const T* bounds;       // (K, 2, D)
  const int64_t* perm;   // (N,)
  const T* coords;       // (N, D) in tree order
  int64_t num_nodes;

  PYE_HD const int64_t* node(int64_t i) const { return nodes + 4 * i; }
  PYE_HD const T* box(int64_t i) const { return bounds + 2 * D * i; }
  PYE_HD const T* point(int64_t pos) const { return coords + pos * D; }
};

// The points within the largest of the ascending key thresholds r2[0..R) of
// q (Metric M: see above), as in the CPU radius_walk: vis.one(pos, rank) per
// scanned point (rank R: outside), vis.all(begin, end) for a node inside the
// smallest radius (with cover), vis.done() stops early. Returns false after
// setting an error slot.
template <int kR, class M, class T, int D, class Visitor>
PYE_HD bool radius_walk(const DeviceTree<T, D>& tree, int64_t root, const T* q, const typename M::Key* r2, int R,
                        bool cover, int* err, Visitor& vis) {
  using K = typename M::Key;
  if (kR > 0) R = kR;
  const K rmax = r2[R - 1];
  if (root < 0 || box_near<M, T, D>(q, tree.box(root)) > rmax) return true;
  int32_t stack[kStack];
  int sp = 0;
  stack[sp++] = static_cast<int32_t>(root);
  int64_t visits = 0;
  while (sp > 0 && !vis.done()) {
    const int64_t node = stack[--sp];
    if (++visits > tree.num_nodes) {  // child ids form a cycle: stop instead of looping
      err[kErrCycle] = 1;
      return false;
    }
    const int64_t* nd = tree.node(node);
    const int c = cover ? rank_of<kR>(box_far<M, T, D>(q, tree.box(node)), r2, R) : R;
    if (c == 0) {
      vis.all(nd[0], nd[1]);
    } else if (c < R || nd[2] < 0) {
      for (int64_t pos = nd[0]; pos < nd[1]; ++pos) {
        const int t = rank_of<kR>(M::template key<T, D>(q, tree.point(pos)), r2, R);
        vis.one(pos, t < c ? t : c);
      }
    } else {
      if (sp + 2 > kStack) {
        err[kErrStack] = 1;
        return false;
      }
      if (box_near<M, T, D>(q, tree.box(nd[3])) <= rmax) stack[sp++] = static_cast<int32_t>(nd[3]);
      if (box_near<M, T, D>(q, tree.box(nd[2])) <= rmax) stack[sp++] = static_cast<int32_t>(nd[2]);
    }
  }
  return true;
}

// (distance, index) order: ties go to the lower index, as on the CPU.
template <class K>
PYE_HD bool cand_less(K da, int64_t ia, K db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

// Max-heap over the parallel arrays (d[0..n), id[0..n)) in (distance, index) order.
template <class K>
PYE_HD void heap_sift_down(K* d, int64_t* id, int64_t i, int64_t n) {
  const K dv = d[i];
  const int64_t iv = id[i];
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && cand_less(d[c], id[c], d[c + 1], id[c + 1])) ++c;
    if (!cand_less(dv, iv, d[c], id[c])) break;
    d[i] = d[c];
    id[i] = id[c];
    i = c;
  }
  d[i] = dv;
  id[i] = iv;
}

template <class K>
PYE_HD void heap_push(K* d, int64_t* id, int64_t n, K dv, int64_t iv) {  // n: size before the push
  int64_t i = n;
  while (i > 0) {
    const int64_t p = (i - 1) / 2;
    if (!cand_less(d[p], id[p], dv, iv)) break;
    d[i] = d[p];
    id[i] = id[p];
    i = p;
  }
  d[i] = dv;
  id[i] = iv;
}

// Offers candidate (dv, iv) to the bounded max-heap of the k best within
// bound (n entries now); returns the new size. The CPU's offer().
template <class K>
PYE_HD int64_t heap_offer(K* d, int64_t* id, int64_t n, int64_t k, K bound, K dv, int64_t iv) {
  if (n < k) {
    if (dv <= bound) heap_push(d, id, n++, dv, iv);
  } else if (cand_less(dv, iv, d[0], id[0])) {
    d[0] = dv;
    id[0] = iv;
    heap_sift_down(d, id, int64_t(0), n);
  }
  return n;
}

// Heap of n entries -> ascending (distance, index).
template <class K>
PYE_HD void heap_sort(K* d, int64_t* id, int64_t n) {
  for (int64_t end = n - 1; end > 0; --end) {
    const K td = d[0];
    const int64_t ti = id[0];
    d[0] = d[end];
    id[0] = id[end];
    d[end] = td;
    id[end] = ti;
    heap_sift_down(d, id, int64_t(0), end);
  }
}

// The k nearest points of q with key <= bound (all of them if fewer) into the
// heap arrays (k slots each), sorted ascending; returns how many. The CPU
// nearest_walk: depth first, nearer child first, nodes farther than the
// current k-th candidate skipped. -1 after setting an error slot.
//
// An inner node whose box is a single point holds identical points, all at
// key `near`: as in the CPU's nearest_identical, its leaves are taken in
// pre-order (the build keeps identical points in index order, so these are
// increasing index blocks) until a leaf's lowest index cannot beat the k-th
// candidate, so n identical points cost O(k + leaf + depth) instead of O(n).
// That walk keeps its pending nodes on the same stack, above the main walk's
// entries (a subtree is no deeper than the tree), so it needs no more
// per-thread memory than before.
template <class M, class T, int D>
PYE_HD int64_t nearest_walk(const DeviceTree<T, D>& tree, int64_t root, const T* q, int64_t k,
                            typename M::Key bound, typename M::Key* hd, int64_t* hi, int* err) {
  using K = typename M::Key;
  if (root < 0 || k <= 0) return 0;
  int32_t stack[kStack];
  K near_of[kStack];
  int sp = 0;
  int64_t n = 0, visits = 0;
  const K root_near = box_near<M, T, D>(q, tree.box(root));
  if (root_near <= bound) {
    stack[sp] = static_cast<int32_t>(root);
    near_of[sp++] = root_near;
  }
  while (sp > 0) {
    --sp;
    const int64_t node = stack[sp];
    const K near = near_of[sp];
    if (++visits > tree.num_nodes) {
      err[kErrCycle] = 1;
      return -1;
    }
    if (near > (n == k ? hd[0] : bound)) continue;
    const int64_t* nd = tree.node(node);
    if (nd[2] < 0) {
      for (int64_t pos = nd[0]; pos < nd[1]; ++pos) {
        n = heap_offer(hd, hi, n, k, bound, M::template key<T, D>(q, tree.point(pos)), tree.perm[pos]);
      }
      continue;
    }
    if (box_is_point<T, D>(tree.box(node))) {
      // near is every point's key: the box is the point (the same computation).
      int top = sp;
      stack[top++] = static_cast<int32_t>(node);
      while (top > sp) {
        const int64_t* ld = tree.node(stack[--top]);
        if (ld[2] >= 0) {
          if (top + 2 > kStack) {
            err[kErrStack] = 1;
            return -1;
          }
          stack[top++] = static_cast<int32_t>(ld[3]);
          stack[top++] = static_cast<int32_t>(ld[2]);
          continue;
        }
        if (n == k) {
          int64_t lo = INT64_MAX;
          for (int64_t pos = ld[0]; pos < ld[1]; ++pos) lo = min_of(lo, tree.perm[pos]);
          if (!cand_less(near, lo, hd[0], hi[0])) break;
        }
        for (int64_t pos = ld[0]; pos < ld[1]; ++pos) n = heap_offer(hd, hi, n, k, bound, near, tree.perm[pos]);
      }
      continue;
    }
    const K worst = n == k ? hd[0] : bound;
    int64_t a = nd[2], b = nd[3];
    K da = box_near<M, T, D>(q, tree.box(a)), db = box_near<M, T, D>(q, tree.box(b));
    if (db < da) {
      const int64_t ti = a;
      a = b;
      b = ti;
      const K td = da;
      da = db;
      db = td;
    }
    if (sp + 2 > kStack) {
      err[kErrStack] = 1;
      return -1;
    }
    // Far child pushed first so the near one is walked first and tightens the bound.
    if (db <= worst) {
      stack[sp] = static_cast<int32_t>(b);
      near_of[sp++] = db;
    }
    if (da <= worst) {
      stack[sp] = static_cast<int32_t>(a);
      near_of[sp++] = da;
    }
  }
  heap_sort(hd, hi, n);
  return n;
}

// Max-heap sift-down of plain ids (for sort_ids).
PYE_HD void sift_ids(int64_t* a, int64_t i, int64_t m) {
  const int64_t v = a[i];
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= m) break;
    if (c + 1 < m && a[c] < a[c + 1]) ++c;
    if (!(v < a[c])) break;
    a[i] = a[c];
    i = c;
  }
  a[i] = v;
}

// Sorts ids[0..n) ascending in place: insertion sort for the usual short
// rows, heapsort (no scratch, O(n log n)) for long ones.
PYE_HD void sort_ids(int64_t* ids, int64_t n) {
  if (n <= 32) {
    for (int64_t i = 1; i < n; ++i) {
      const int64_t v = ids[i];
      int64_t j = i;
      for (; j > 0 && ids[j - 1] > v; --j) ids[j] = ids[j - 1];
      ids[j] = v;
    }
    return;
  }
  for (int64_t i = n / 2 - 1; i >= 0; --i) sift_ids(ids, i, n);
  for (int64_t end = n - 1; end > 0; --end) {
    const int64_t t = ids[0];
    ids[0] = ids[end];
    ids[end] = t;
    sift_ids(ids, 0, end);
  }
}

// Bits of a float / double as an unsigned 64-bit integer that sorts like the
// value (a float's in the top 32 bits, the low 32 zero).
PYE_HD uint64_t ordered_bits(float x) {
  uint32_t u;
#ifdef __CUDA_ARCH__
  u = __float_as_uint(x);
#else
  std::memcpy(&u, &x, sizeof u);
#endif
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return static_cast<uint64_t>(u) << 32;
}
PYE_HD uint64_t ordered_bits(double x) {
  uint64_t u;
#ifdef __CUDA_ARCH__
  u = static_cast<uint64_t>(__double_as_longlong(x));
#else
  std::memcpy(&u, &x, sizeof u);
#endif
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

}  // namespace pyengine::neighbors::cuda
