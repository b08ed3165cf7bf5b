#pragma once
// Per-thread k-d tree walks of the GPU queries: one thread walks the tree for
// one query with a fixed-size stack. Plain __host__ __device__ code with no
// CUDA-only constructs, so the same walks also compile for the host (see
// kdtree_cuda.cuh on why that matters).
//
// The arithmetic reproduces the CPU walks (kdtree_search_cpu.h) bit for bit:
// squared distances summed in coordinate order with every product and sum
// rounded separately (nvcc would otherwise contract them into FMAs, and
// points exactly at the radius would then fall differently on the two
// devices), the same box bounds, the same (distance, index) order.
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
// the heap in the output rows.
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

template <class T, int D>
PYE_HD T dist2(const T* a, const T* b) {
  T s = 0;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    const T t = a[k] - b[k];
    s = add_rn(s, mul_rn(t, t));
  }
  return s;
}

// Squared distance from q to the nearest point of box (lo row, then hi row).
template <class T, int D>
PYE_HD T box_near2(const T* q, const T* box) {
  T n[D];
#pragma unroll
  for (int k = 0; k < D; ++k) n[k] = min_of(max_of(q[k], box[k]), box[D + k]);
  return dist2<T, D>(q, n);
}

// Squared distance from q to the farthest corner of the box.
template <class T, int D>
PYE_HD T box_far2(const T* q, const T* box) {
  T f[D];
#pragma unroll
  for (int k = 0; k < D; ++k) f[k] = std::fabs(q[k] - box[k]) >= std::fabs(q[k] - box[D + k]) ? box[k] : box[D + k];
  return dist2<T, D>(q, f);
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

// The points within the largest of the ascending squared radii r2[0..R) of q,
// as in the CPU radius_walk: vis.one(pos, rank) per scanned point (rank R:
// outside), vis.all(begin, end) for a node inside the smallest radius (with
// cover), vis.done() stops early. Returns false after setting an error slot.
template <int kR, class T, int D, class Visitor>
PYE_HD bool radius_walk(const DeviceTree<T, D>& tree, int64_t root, const T* q, const T* r2, int R, bool cover,
                        int* err, Visitor& vis) {
  if (kR > 0) R = kR;
  const T rmax = r2[R - 1];
  if (root < 0 || box_near2<T, D>(q, tree.box(root)) > rmax) return true;
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
    const int c = cover ? rank_of<kR>(box_far2<T, D>(q, tree.box(node)), r2, R) : R;
    if (c == 0) {
      vis.all(nd[0], nd[1]);
    } else if (c < R || nd[2] < 0) {
      for (int64_t pos = nd[0]; pos < nd[1]; ++pos) {
        const int t = rank_of<kR>(dist2<T, D>(q, tree.point(pos)), r2, R);
        vis.one(pos, t < c ? t : c);
      }
    } else {
      if (sp + 2 > kStack) {
        err[kErrStack] = 1;
        return false;
      }
      if (box_near2<T, D>(q, tree.box(nd[3])) <= rmax) stack[sp++] = static_cast<int32_t>(nd[3]);
      if (box_near2<T, D>(q, tree.box(nd[2])) <= rmax) stack[sp++] = static_cast<int32_t>(nd[2]);
    }
  }
  return true;
}

// (distance, index) order: ties go to the lower index, as on the CPU.
template <class T>
PYE_HD bool cand_less(T da, int64_t ia, T db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

// Max-heap over the parallel arrays (d[0..n), id[0..n)) in (distance, index) order.
template <class T>
PYE_HD void heap_sift_down(T* d, int64_t* id, int64_t i, int64_t n) {
  const T dv = d[i];
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

template <class T>
PYE_HD void heap_push(T* d, int64_t* id, int64_t n, T dv, int64_t iv) {  // n: size before the push
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

// Heap of n entries -> ascending (distance, index).
template <class T>
PYE_HD void heap_sort(T* d, int64_t* id, int64_t n) {
  for (int64_t end = n - 1; end > 0; --end) {
    const T td = d[0];
    const int64_t ti = id[0];
    d[0] = d[end];
    id[0] = id[end];
    d[end] = td;
    id[end] = ti;
    heap_sift_down(d, id, 0, end);
  }
}

// The k nearest points of q with d2 <= bound2 (all of them if fewer) into
// the heap arrays (k slots each), sorted ascending; returns how many. The CPU
// nearest_walk: depth first, nearer child first, nodes farther than the
// current k-th candidate skipped. -1 after setting an error slot.
template <class T, int D>
PYE_HD int64_t nearest_walk(const DeviceTree<T, D>& tree, int64_t root, const T* q, int64_t k, T bound2, T* hd,
                            int64_t* hi, int* err) {
  if (root < 0 || k <= 0) return 0;
  int32_t stack[kStack];
  T near_of[kStack];
  int sp = 0;
  int64_t n = 0, visits = 0;
  const T root_near = box_near2<T, D>(q, tree.box(root));
  if (root_near <= bound2) {
    stack[sp] = static_cast<int32_t>(root);
    near_of[sp++] = root_near;
  }
  while (sp > 0) {
    --sp;
    const int64_t node = stack[sp];
    const T near = near_of[sp];
    if (++visits > tree.num_nodes) {
      err[kErrCycle] = 1;
      return -1;
    }
    if (near > (n == k ? hd[0] : bound2)) continue;
    const int64_t* nd = tree.node(node);
    if (nd[2] < 0) {
      for (int64_t pos = nd[0]; pos < nd[1]; ++pos) {
        const int64_t id = tree.perm[pos];
        const T d = dist2<T, D>(q, tree.point(pos));
        if (n < k) {
          if (d <= bound2) heap_push(hd, hi, n++, d, id);
        } else if (cand_less(d, id, hd[0], hi[0])) {
          hd[0] = d;
          hi[0] = id;
          heap_sift_down(hd, hi, 0, n);
        }
      }
      continue;
    }
    const T worst = n == k ? hd[0] : bound2;
    int64_t a = nd[2], b = nd[3];
    T da = box_near2<T, D>(q, tree.box(a)), db = box_near2<T, D>(q, tree.box(b));
    if (db < da) {
      const int64_t ti = a;
      a = b;
      b = ti;
      const T td = da;
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
