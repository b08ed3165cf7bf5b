#pragma once
// The GPU k-d tree: build and queries written with Thrust algorithms and
// __host__ __device__ functors, templated on a Backend that supplies the
// execution policy. kdtree_cuda.cu instantiates it with the CUDA policy
// (CUB radix sorts and scans underneath, temporary memory from torch's
// caching allocator); with Thrust's sequential host policy the very same code
// runs on the CPU, which is how the GPU algorithm is checked on machines
// without a GPU (scripts/emulate_cuda_neighbors.py).
//
// Build (why a sort-built k-d tree rather than a cell grid: the tree is the
// format every other op consumes, KDTree / kd_partition included, and a grid
// degrades on clustered CAD surfaces where one cell size cannot fit both a
// fillet and a flat panel). The tree is built level by level, all nodes of one
// depth at once: a segmented reduction gives every node its tight box, then
// one radix sort by (node, coordinate on the node's widest side) puts every
// splitting node's lower half first; node ranges and child ids follow from the
// sizes alone (kdtree_layout.h), so the result has exactly the CPU layout.
//
// Queries: one thread per query in Morton order of the queries (neighboring
// threads walk the same nodes), radius search as count then fill without
// reallocation, rows sorted by point index in place.
#include <ATen/ATen.h>
#include <thrust/binary_search.h>
#include <thrust/count.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/sort.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "common/checks.h"
#include "neighbors/kdtree_layout.h"
#include "neighbors/kdtree_walk_gpu.h"
#include "neighbors/neighbors.h"

namespace pyengine::neighbors::gpu {

using Count = thrust::counting_iterator<int64_t>;

template <class Backend, class F>
void for_n(Backend& be, int64_t n, const F& f) {
  if (n > 0) thrust::for_each(be.policy(), Count(0), Count(n), f);
}

// True when x is NaN or +-Inf (x - x is then NaN), without relying on
// std::isfinite being available to device code.
template <class T>
struct NotFinite {
  PYE_HD bool operator()(T x) const { return !(x - x == T(0)); }
};

template <class Backend, class T>
bool all_finite(Backend& be, const T* x, int64_t n) {
  return n == 0 || thrust::count_if(be.policy(), x, x + n, NotFinite<T>()) == 0;
}

// ----------------------------------------------------------------------------------------------- build

template <class T, int D>
struct Box {
  T lo[D], hi[D];
};

template <class T, int D>
struct BoxOfPos {
  const T* xyz;
  PYE_HD Box<T, D> operator()(int64_t p) const {
    Box<T, D> b;
    for (int k = 0; k < D; ++k) b.lo[k] = b.hi[k] = xyz[p * D + k];
    return b;
  }
};

template <class T, int D>
struct BoxUnion {
  PYE_HD Box<T, D> operator()(const Box<T, D>& a, const Box<T, D>& b) const {
    Box<T, D> c;
    for (int k = 0; k < D; ++k) {
      c.lo[k] = min_of(a.lo[k], b.lo[k]);
      c.hi[k] = max_of(a.hi[k], b.hi[k]);
    }
    return c;
  }
};

// Run tag of a position for the current level: 2j + 1 inside level node j,
// 2(j + 1) in a leaf finished at an earlier level (between level nodes j and
// j + 1). Tags grow with the position, so every run is contiguous and sorting
// by tag first keeps each run in its place.
struct RunTag {
  const int64_t* begin;  // (L,) ascending
  const int64_t* end;
  int64_t L;
  PYE_HD int64_t operator()(int64_t pos) const {
    int64_t lo = 0, hi = L;  // first level node starting after pos
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (begin[mid] <= pos) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const int64_t j = lo - 1;
    return (j >= 0 && pos < end[j]) ? 2 * j + 1 : 2 * (j + 1);
  }
};

// Writes the box of every level node (from the reduced runs) and picks its
// split side: the widest, the first on ties (as the CPU build).
template <class T, int D>
struct WriteBoxes {
  const int64_t* run_tag;
  const Box<T, D>* run_box;
  const int64_t* lv_node;
  T* bounds;
  int32_t* lv_dim;
  PYE_HD void operator()(int64_t r) const {
    const int64_t tag = run_tag[r];
    if ((tag & 1) == 0) return;  // a finished leaf's run
    const int64_t j = tag >> 1;
    const Box<T, D> b = run_box[r];
    T* out = bounds + 2 * D * lv_node[j];
    int dim = 0;
    for (int k = 0; k < D; ++k) {
      out[k] = b.lo[k];
      out[D + k] = b.hi[k];
      if (k > 0 && b.hi[k] - b.lo[k] > b.hi[dim] - b.lo[dim]) dim = k;
    }
    lv_dim[j] = dim;
  }
};

// Node rows of the level and whether each splits.
struct WriteNodes {
  const int64_t *lv_node, *lv_begin, *lv_end;
  int64_t leaf;
  int64_t* nodes;
  int64_t* splits;
  PYE_HD void operator()(int64_t j) const {
    const int64_t node = lv_node[j], b = lv_begin[j], e = lv_end[j];
    int64_t* nd = nodes + 4 * node;
    nd[0] = b;
    nd[1] = e;
    const bool split = e - b > leaf;
    nd[2] = split ? node + 1 : -1;
    nd[3] = split ? node + 1 + count_nodes((e - b) / 2, leaf) : -1;
    splits[j] = split;
  }
};

// Sort key of a position: its run tag in the top tag_bits (<= 32) bits, then
// (inside a splitting node) the order bits of its coordinate on the node's
// split side: all 32 of a float's, the top 64 - tag_bits of a double's (which
// side of the median near-equal doubles land on does not matter: the boxes are
// computed from the points themselves).
template <class T, int D>
struct SortKey {
  RunTag tag;
  int tag_bits;
  const int32_t* lv_dim;
  const int64_t* splits;
  const T* xyz;
  uint64_t* keys;
  int64_t* idx;
  PYE_HD void operator()(int64_t p) const {
    const int64_t t = tag(p);
    uint64_t low = 0;
    if ((t & 1) && splits[t >> 1]) low = ordered_bits(xyz[p * D + lv_dim[t >> 1]]) >> tag_bits;
    keys[p] = (static_cast<uint64_t>(t) << (64 - tag_bits)) | low;
    idx[p] = p;
  }
};

template <class T, int D>
struct GatherPositions {
  const int64_t* idx;
  const int64_t* src_id;
  const T* src_xyz;
  int64_t* dst_id;
  T* dst_xyz;
  PYE_HD void operator()(int64_t p) const {
    const int64_t s = idx[p];
    dst_id[p] = src_id[s];
    for (int k = 0; k < D; ++k) dst_xyz[p * D + k] = src_xyz[s * D + k];
  }
};

// Children of the splitting level nodes, in level order (so begins stay ascending).
struct NextLevel {
  const int64_t *lv_node, *lv_begin, *lv_end, *splits, *offset;
  int64_t leaf;
  int64_t *nx_node, *nx_begin, *nx_end;
  PYE_HD void operator()(int64_t j) const {
    if (!splits[j]) return;
    const int64_t node = lv_node[j], b = lv_begin[j], n = lv_end[j] - b, o = 2 * offset[j];
    const int64_t mid = b + n / 2;
    nx_node[o] = node + 1;
    nx_begin[o] = b;
    nx_end[o] = mid;
    nx_node[o + 1] = node + 1 + count_nodes(n / 2, leaf);
    nx_begin[o + 1] = mid;
    nx_end[o + 1] = b + n;
  }
};

// A copy of host values on the device (synchronous: the vector may go right after).
inline at::Tensor host_to(const std::vector<int64_t>& v, at::IntArrayRef shape, at::Device dev) {
  auto host = at::empty(shape, at::kLong);
  std::copy(v.begin(), v.end(), host.data_ptr<int64_t>());
  return host.to(dev);
}

struct Iota {
  int64_t* out;
  PYE_HD void operator()(int64_t i) const { out[i] = i; }
};

// level0: (node, begin, end) of every non-empty batch's root, ascending.
template <class T, int D, class Backend>
void build_levels(Backend& be, const at::Tensor& points, const std::vector<int64_t>& level0, int64_t leaf,
                  at::Tensor& perm, at::Tensor& nodes, at::Tensor& bounds) {
  const int64_t N = points.size(0);
  const auto lopt = perm.options();
  const auto dev = points.device();
  auto ids = at::empty({N}, lopt), ids_alt = at::empty({N}, lopt);
  auto xyz = points.clone(), xyz_alt = at::empty_like(points);
  auto keys = at::empty({N}, lopt), idx = at::empty({N}, lopt);
  for_n(be, N, Iota{ids.data_ptr<int64_t>()});

  int64_t L = static_cast<int64_t>(level0.size()) / 3;
  if (L == 0) return;  // no points: perm is empty too
  auto lv = host_to(level0, {3, L}, dev);
  while (L > 0) {
    const int64_t* lv_node = lv.data_ptr<int64_t>();
    const int64_t* lv_begin = lv_node + L;
    const int64_t* lv_end = lv_node + 2 * L;
    const RunTag tag{lv_begin, lv_end, L};

    // Boxes: one reduction over the runs of all positions (at most 2L + 1 runs).
    const int64_t max_runs = 2 * L + 1;
    auto run_tag = at::empty({max_runs}, lopt);
    auto run_box = at::empty({max_runs * int64_t(sizeof(Box<T, D>))}, lopt.dtype(at::kByte));
    auto* rb = reinterpret_cast<Box<T, D>*>(run_box.data_ptr<uint8_t>());
    auto tags = thrust::make_transform_iterator(Count(0), tag);
    auto boxes = thrust::make_transform_iterator(Count(0), BoxOfPos<T, D>{xyz.data_ptr<T>()});
    const auto ends = thrust::reduce_by_key(be.policy(), tags, tags + N, boxes, run_tag.data_ptr<int64_t>(), rb,
                                            thrust::equal_to<int64_t>(), BoxUnion<T, D>());
    const int64_t runs = ends.first - run_tag.data_ptr<int64_t>();
    auto lv_dim = at::empty({L}, lopt.dtype(at::kInt));
    auto splits = at::empty({L}, lopt);
    for_n(be, runs, WriteBoxes<T, D>{run_tag.data_ptr<int64_t>(), rb, lv_node, bounds.data_ptr<T>(),
                                     lv_dim.data_ptr<int32_t>()});
    for_n(be, L, WriteNodes{lv_node, lv_begin, lv_end, leaf, nodes.data_ptr<int64_t>(), splits.data_ptr<int64_t>()});

    auto offset = at::empty({L}, lopt);
    int64_t* off = offset.data_ptr<int64_t>();
    thrust::exclusive_scan(be.policy(), splits.data_ptr<int64_t>(), splits.data_ptr<int64_t>() + L, off);
    const int64_t num_split = offset[L - 1].item<int64_t>() + splits[L - 1].item<int64_t>();
    if (num_split == 0) break;

    // Lower half of every splitting node first: one sort of all positions.
    auto* k64 = reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>());
    int tag_bits = 1;  // tags are < 2L + 2
    while ((int64_t(1) << tag_bits) < 2 * L + 2) ++tag_bits;
    TORCH_INTERNAL_ASSERT(tag_bits <= 32, "kdtree_build (GPU): too many nodes on one level");
    for_n(be, N, SortKey<T, D>{tag, tag_bits, lv_dim.data_ptr<int32_t>(), splits.data_ptr<int64_t>(), xyz.data_ptr<T>(), k64,
                               idx.data_ptr<int64_t>()});
    thrust::sort_by_key(be.policy(), k64, k64 + N, idx.data_ptr<int64_t>());
    for_n(be, N, GatherPositions<T, D>{idx.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), xyz.data_ptr<T>(),
                                       ids_alt.data_ptr<int64_t>(), xyz_alt.data_ptr<T>()});
    std::swap(ids, ids_alt);
    std::swap(xyz, xyz_alt);

    auto next = at::empty({3, 2 * num_split}, lopt);
    int64_t* nx = next.data_ptr<int64_t>();
    for_n(be, L, NextLevel{lv_node, lv_begin, lv_end, splits.data_ptr<int64_t>(), off, leaf, nx, nx + 2 * num_split,
                           nx + 4 * num_split});
    lv = next;
    L = 2 * num_split;
  }
  perm.copy_(ids);
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> build(Backend& be, const at::Tensor& points_in,
                                                                 const at::Tensor& batch_ptr_in, int64_t leaf_size) {
  const int64_t D = check_points(points_in, "points");
  check_same_device(batch_ptr_in, "batch_ptr", points_in, "points");
  const int64_t N = points_in.size(0);
  check_row_ptr(batch_ptr_in, N, "batch_ptr", "the number of points");
  TORCH_CHECK_VALUE(leaf_size >= 1, "leaf_size must be >= 1, got ", leaf_size);
  const auto points = points_in.contiguous();
  // The batch layout decides the node layout, so it is read on the host (B + 1 values).
  const auto bp_host = batch_ptr_in.to(at::kCPU).contiguous();
  const int64_t B = bp_host.numel() - 1;
  const int64_t* bp = bp_host.const_data_ptr<int64_t>();
  std::vector<int64_t> roots_host(B), node0, begin0, end0;
  int64_t num_nodes = 0;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(0 <= bp[b] && bp[b] <= bp[b + 1] && bp[b + 1] <= N, "batch_ptr must be non-decreasing within [0, ",
                      N, "] (the number of points)");
    const int64_t n = bp[b + 1] - bp[b];
    roots_host[b] = n > 0 ? num_nodes : -1;
    if (n > 0) {
      node0.push_back(num_nodes);
      begin0.push_back(bp[b]);
      end0.push_back(bp[b + 1]);
      num_nodes += count_nodes(n, leaf_size);
    }
  }
  // Walk stacks hold node ids as int32.
  TORCH_CHECK_VALUE(num_nodes < (int64_t(1) << 31), "too many k-d tree nodes (", num_nodes,
                    ") for the CUDA build; raise leaf_size");
  const auto lopt = batch_ptr_in.options().dtype(at::kLong);
  auto roots = host_to(roots_host, {B}, points.device());
  auto perm = at::empty({N}, lopt);
  auto nodes = at::empty({num_nodes, 4}, lopt);
  auto bounds = at::empty({num_nodes, 2, D}, points.options());
  std::vector<int64_t> level0(node0);
  level0.insert(level0.end(), begin0.begin(), begin0.end());
  level0.insert(level0.end(), end0.begin(), end0.end());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_build_gpu", [&] {
    TORCH_CHECK_VALUE(all_finite(be, points.const_data_ptr<scalar_t>(), N * D), "points contains NaN or Inf");
    if (D == 2) {
      build_levels<scalar_t, 2>(be, points, level0, leaf_size, perm, nodes, bounds);
    } else {
      build_levels<scalar_t, 3>(be, points, level0, leaf_size, perm, nodes, bounds);
    }
  });
  return {perm, nodes, bounds, roots};
}

// ----------------------------------------------------------------------------------------------- queries

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

// Node rows that would send a walk out of bounds.
struct BadNode {
  const int64_t* nodes;
  int64_t N, K;
  PYE_HD bool operator()(int64_t i) const {
    const int64_t* nd = nodes + 4 * i;
    bool good = 0 <= nd[0] && nd[0] <= nd[1] && nd[1] <= N;
    good = good && ((nd[2] == -1 && nd[3] == -1) || (0 <= nd[2] && nd[2] < K && 0 <= nd[3] && nd[3] < K));
    return !good;
  }
};

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
        f = min_of(max_of(f, T(0)), T((1 << kBits) - 1));
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
};

template <class T, int D, class Backend>
Prepared<T, D> prepare(Backend& be, const TreeArgs& a) {
  const int64_t N = a.num_points, K = a.num_nodes, B = a.num_batches, M = a.num_queries;
  Prepared<T, D> p;
  const int64_t* nodes = a.nodes.const_data_ptr<int64_t>();
  const bool bad_nodes = K > 0 && thrust::count_if(be.policy(), Count(0), Count(K), BadNode{nodes, N, K}) > 0;
  TORCH_CHECK_VALUE(!bad_nodes, "nodes is not a valid k-d tree: every row needs 0 <= begin <= end <= N (", N,
                    ") and child ids both -1 (leaf) or both in [0, K) (K = ", K, ")");
  TORCH_CHECK_VALUE(K < (int64_t(1) << 31), "too many k-d tree nodes (", K, ") for the CUDA queries");
  const auto roots_cpu = a.roots.to(at::kCPU);
  const auto qptr_cpu = a.query_ptr.to(at::kCPU);
  p.roots_host.assign(roots_cpu.const_data_ptr<int64_t>(), roots_cpu.const_data_ptr<int64_t>() + B);
  p.qptr_host.assign(qptr_cpu.const_data_ptr<int64_t>(), qptr_cpu.const_data_ptr<int64_t>() + B + 1);
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(-1 <= p.roots_host[b] && p.roots_host[b] < K, "roots must hold node ids in [0, K) or -1 (K = ",
                      K, "), got roots[", b, "] = ", p.roots_host[b]);
  }
  TORCH_CHECK_VALUE(B > 0 || M == 0, "queries need a batch, but roots is empty");
  TORCH_CHECK_VALUE(all_finite(be, a.queries.const_data_ptr<T>(), M * D), "queries contains NaN or Inf");

  // Leaf scans read the points in tree order (contiguous per leaf); the
  // gather checks perm's range on the way.
  p.coords = at::empty({N, D}, a.points.options());
  auto bad = at::zeros({1}, a.perm.options().dtype(at::kInt));
  for_n(be, N, GatherTree<T, D>{a.perm.const_data_ptr<int64_t>(), a.points.const_data_ptr<T>(), N,
                                p.coords.template data_ptr<T>(), bad.data_ptr<int32_t>()});
  TORCH_CHECK_VALUE(bad.item<int32_t>() == 0, "perm must hold point indices in [0, N) (N = ", N, ")");
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

// Squared radii of a query: the query's own radius, or R shared ascending ones.
template <class T>
struct Radii {
  T r2[kMaxRadii];
  const T* per_query;  // (M,) radii, or null
  int R;
  PYE_HD void get(int64_t i, T* out) const {
    if (per_query) {
      out[0] = mul_rn(per_query[i], per_query[i]);
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
template <int kR, class T, int D>
struct RadiusCount {
  DeviceTree<T, D> tree;
  QueryMap qm;
  const T* queries;
  const int64_t* roots;
  Radii<T> radii;
  int64_t cap;
  int64_t* rp[kMaxRadii];
  int32_t* err;
  PYE_HD void operator()(int64_t j) const {
    const int64_t i = qm.query(j), b = qm.batch_of(i);
    const T* q = queries + i * D;
    T r2[kMaxRadii];
    radii.get(i, r2);
    const int R = radii.R;
    if constexpr (kR == 1) {
      CountOne v{cap};
      radius_walk<1, T, D>(tree, roots[b], q, r2, 1, cap < 0, err, v);
      rp[0][i + 1] = cap > 0 && v.n > cap ? cap : v.n;
    } else {
      int64_t hist[kMaxRadii + 1];
      for (int t = 0; t <= R; ++t) hist[t] = 0;
      CountRanks v{hist, cap};
      radius_walk<0, T, D>(tree, roots[b], q, r2, R, cap < 0, err, v);
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
template <int kR, class T, int D>
struct RadiusFill {
  DeviceTree<T, D> tree;
  QueryMap qm;
  const T* queries;
  const int64_t* roots;
  Radii<T> radii;
  int64_t cap;
  const int64_t* rp[kMaxRadii];
  int64_t* col[kMaxRadii];
  T* d2;  // (nnz of the largest radius,) with a cap
  int32_t* err;
  PYE_HD void operator()(int64_t j) const {
    const int64_t i = qm.query(j), b = qm.batch_of(i);
    const T* q = queries + i * D;
    T r2[kMaxRadii];
    radii.get(i, r2);
    const int R = kR > 0 ? kR : radii.R;
    if (cap > 0) {
      const int64_t start = rp[R - 1][i], len = rp[R - 1][i + 1] - start;
      int64_t* ids = col[R - 1] + start;
      const int64_t n = nearest_walk<T, D>(tree, roots[b], q, len, r2[R - 1], d2 + start, ids, err);
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
      if (!radius_walk<1, T, D>(tree, roots[b], q, r2, 1, true, err, v)) return;
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
      if (!radius_walk<0, T, D>(tree, roots[b], q, r2, R, true, err, v)) return;
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
template <int kR, class T, int D, class Backend>
std::vector<std::pair<at::Tensor, at::Tensor>> radius_search(Backend& be, const TreeArgs& a, Prepared<T, D>& p,
                                                             const Radii<T>& radii, int64_t cap) {
  const int64_t M = a.num_queries;
  const int R = radii.R;
  const auto lopt = a.perm.options();
  std::vector<at::Tensor> row_ptr(R), col(R);
  RadiusCount<kR, T, D> count{p.tree, p.qm, a.queries.const_data_ptr<T>(), a.roots.const_data_ptr<int64_t>(),
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
  RadiusFill<kR, T, D> fill{p.tree, p.qm, a.queries.const_data_ptr<T>(), a.roots.const_data_ptr<int64_t>(),
                            radii, cap, {}, {}, nullptr, p.err.template data_ptr<int32_t>()};
  for (int s = 0; s < R; ++s) {
    col[s] = at::empty({nnz.const_data_ptr<int64_t>()[s]}, lopt);
    fill.rp[s] = count.rp[s];
    fill.col[s] = col[s].data_ptr<int64_t>();
  }
  at::Tensor d2;
  if (cap > 0) {
    d2 = at::empty({nnz.const_data_ptr<int64_t>()[R - 1]}, a.points.options());
    fill.d2 = d2.data_ptr<T>();
  }
  for_n(be, M, fill);
  check_walk_errors(p.err);
  std::vector<std::pair<at::Tensor, at::Tensor>> out(R);
  for (int s = 0; s < R; ++s) out[s] = {row_ptr[s], col[s]};
  return out;
}

template <class T>
struct BadRadius {
  PYE_HD bool operator()(T r) const { return !(r - r == T(0)) || r < T(0); }
};

template <class F>
void dispatch_dim(int64_t d, const F& f) {
  if (d == 2) {
    f(std::integral_constant<int, 2>{});
  } else {
    f(std::integral_constant<int, 3>{});
  }
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
    TORCH_CHECK_VALUE(M == 0 || thrust::count_if(be.policy(), r, r + M, BadRadius<T>()) == 0,
                      "radius must be finite and >= 0, got a negative, NaN or Inf entry");
    dispatch_dim(a.dim, [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      auto p = prepare<T, D>(be, a);
      Radii<T> radii{};
      radii.per_query = r;
      radii.R = 1;
      out = radius_search<1, T, D>(be, a, p, radii, max_neighbors)[0];
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
      // Groups of up to kMaxRadii radii, one walk per query each.
      for (int g0 = 0; g0 < R; g0 += kMaxRadii) {
        const int G = std::min(R - g0, kMaxRadii);
        Radii<T> radii{};
        radii.per_query = nullptr;
        radii.R = G;
        for (int s = 0; s < G; ++s) radii.r2[s] = r[order[g0 + s]] * r[order[g0 + s]];
        auto res = G == 1 ? radius_search<1, T, D>(be, a, p, radii, max_neighbors)
                          : radius_search<0, T, D>(be, a, p, radii, max_neighbors);
        for (int s = 0; s < G; ++s) {
          flat[2 * order[g0 + s]] = res[s].first;
          flat[2 * order[g0 + s] + 1] = res[s].second;
        }
      }
    });
  });
  return flat;
}

template <class T, int D, bool kLocal>
struct KnnQuery {
  DeviceTree<T, D> tree;
  QueryMap qm;
  const T* queries;
  const int64_t* roots;
  int64_t k;
  T inf;
  T* dist;
  int64_t* idx;
  int32_t* err;
  PYE_HD void operator()(int64_t j) const {
    const int64_t i = qm.query(j), b = qm.batch_of(i);
    T* dr = dist + i * k;
    int64_t* ir = idx + i * k;
    T local_d[kLocal ? kLocalHeap : 1];
    int64_t local_i[kLocal ? kLocalHeap : 1];
    T* hd = kLocal ? local_d : dr;
    int64_t* hi = kLocal ? local_i : ir;
    const int64_t n = nearest_walk<T, D>(tree, roots[b], queries + i * D, k, inf, hd, hi, err);
    if (n < 0) return;
    if (n != k) {
      err[kErrKnn] = 1;
      return;
    }
    for (int64_t m = 0; m < k; ++m) {
      dr[m] = std::sqrt(hd[m]);
      ir[m] = hi[m];
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
      const T inf = std::numeric_limits<T>::infinity();
      const T* q = a.queries.const_data_ptr<T>();
      const int64_t* rt = a.roots.const_data_ptr<int64_t>();
      if (k <= kLocalHeap) {
        for_n(be, M, KnnQuery<T, D, true>{p.tree, p.qm, q, rt, k, inf, dist.data_ptr<T>(), idx.data_ptr<int64_t>(),
                                          p.err.template data_ptr<int32_t>()});
      } else {
        for_n(be, M, KnnQuery<T, D, false>{p.tree, p.qm, q, rt, k, inf, dist.data_ptr<T>(), idx.data_ptr<int64_t>(),
                                           p.err.template data_ptr<int32_t>()});
      }
      check_walk_errors(p.err);
    });
  });
  return {dist, idx};
}

}  // namespace pyengine::neighbors::gpu
