#pragma once
// GPU k-d tree build, level by level (see kdtree_cuda.cuh for the design).
#include <ATen/ATen.h>
#include <thrust/functional.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/scan.h>
#include <thrust/sort.h>

#include <utility>
#include <vector>

#include "common/checks.h"
#include "neighbors/kdtree_common_cuda.cuh"
#include "neighbors/kdtree_layout.h"
#include "neighbors/kdtree_walk_cuda.cuh"
#include "neighbors/neighbors.h"

namespace pyengine::neighbors::cuda {

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
    // Stable: positions of equal keys keep their order, so identical points stay
    // in index order (from the iota above) at every level, and the leaves of a
    // subtree of identical points hold increasing index blocks, as the CPU
    // build's; the duplicate-aware kNN walk relies on it (kdtree_walk_cuda.cuh).
    // (Radix sort either way on CUDA, which is stable.)
    thrust::stable_sort_by_key(be.policy(), k64, k64 + N, idx.data_ptr<int64_t>());
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

}  // namespace pyengine::neighbors::cuda
