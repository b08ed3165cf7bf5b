// CPU k-d tree build: each batch's points are split recursively at the median
// of their bounding box's widest side until at most leaf_size remain.
//
// Node ids are the pre-order of each batch's tree, batch after batch. A node
// over n points has left child id + 1 and right child id + 1 + (nodes in a
// subtree over n / 2 points), a count that depends on n alone, so any subtree
// can be built on its own thread straight into the output tensors; the result
// does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <vector>

#include "common/checks.h"
#include "neighbors/kdtree_layout.h"
#include "neighbors/neighbors.h"

namespace pyengine::neighbors {
namespace {

// A point and its original index, moved together: the median partitions then
// scan contiguous memory, where an index-only permutation would fetch every
// coordinate at random on every level.
template <class T, int D>
struct Item {
  T x[D];
  int64_t id;
};

struct Task {
  int64_t node, begin, end;
  int64_t size() const { return end - begin; }
};

template <class T, int D>
struct Builder {
  Item<T, D>* items;
  int64_t* nodes;  // (K, 4)
  T* bounds;       // (K, 2, D)
  int64_t leaf;

  // Writes node t (its tight box, its range) and, unless it is a leaf,
  // partitions its range around the median and returns the children.
  bool split(const Task& t, Task& left, Task& right) const {
    T lo[D], hi[D];
    for (int k = 0; k < D; ++k) lo[k] = hi[k] = items[t.begin].x[k];
    for (int64_t i = t.begin + 1; i < t.end; ++i) {
      for (int k = 0; k < D; ++k) {
        lo[k] = std::min(lo[k], items[i].x[k]);
        hi[k] = std::max(hi[k], items[i].x[k]);
      }
    }
    T* box = bounds + 2 * D * t.node;
    std::copy(lo, lo + D, box);
    std::copy(hi, hi + D, box + D);
    int64_t* nd = nodes + 4 * t.node;
    nd[0] = t.begin;
    nd[1] = t.end;
    nd[2] = nd[3] = -1;
    if (t.size() <= leaf) return false;

    int dim = 0;  // widest side, the first on ties
    for (int k = 1; k < D; ++k) {
      if (hi[k] - lo[k] > hi[dim] - lo[dim]) dim = k;
    }
    // The index breaks coordinate ties, so the split is fully determined by
    // the set of points and duplicates cannot unbalance it.
    const int64_t mid = t.begin + t.size() / 2;
    std::nth_element(items + t.begin, items + mid, items + t.end, [dim](const Item<T, D>& a, const Item<T, D>& b) {
      return a.x[dim] < b.x[dim] || (a.x[dim] == b.x[dim] && a.id < b.id);
    });
    left = {t.node + 1, t.begin, mid};
    right = {t.node + 1 + count_nodes(mid - t.begin, leaf), mid, t.end};
    nd[2] = left.node;
    nd[3] = right.node;
    return true;
  }

  // Depth ~log2(n / leaf): the median split halves the range at every level.
  void build(const Task& t) const {
    Task l, r;
    if (split(t, l, r)) {
      build(l);
      build(r);
    }
  }
};

template <class T, int D>
void build_trees(const at::Tensor& points, std::vector<Task> tasks, int64_t leaf, at::Tensor& perm,
                 at::Tensor& nodes, at::Tensor& bounds) {
  const int64_t N = points.size(0);
  std::unique_ptr<Item<T, D>[]> items(new Item<T, D>[N]);
  const T* pts = points.const_data_ptr<T>();
  std::atomic<bool> finite{true};
  at::parallel_for(0, N, 1 << 14, [&](int64_t i0, int64_t i1) {
    bool ok = true;
    for (int64_t i = i0; i < i1; ++i) {
      for (int k = 0; k < D; ++k) {
        items[i].x[k] = pts[i * D + k];
        ok &= std::isfinite(pts[i * D + k]);
      }
      items[i].id = i;
    }
    if (!ok) finite.store(false, std::memory_order_relaxed);
  });
  TORCH_CHECK_VALUE(finite.load(), "points contains NaN or Inf");

  const Builder<T, D> builder{items.get(), nodes.data_ptr<int64_t>(), bounds.data_ptr<T>(), leaf};
  const int64_t threads = at::get_num_threads();

  // Top levels first, one level of the large ranges at a time (their splits
  // run side by side), until every range is small enough that the ranges,
  // built whole in parallel, keep all threads busy. Only the root split of the
  // largest batch runs alone.
  const int64_t small = std::max<int64_t>({leaf, N / (8 * threads), 4096});
  for (;;) {
    std::vector<Task> big, next;
    for (const Task& t : tasks) (t.size() > small ? big : next).push_back(t);
    if (big.empty()) break;
    std::vector<Task> kids(2 * big.size());
    std::vector<char> did_split(big.size());
    at::parallel_for(0, int64_t(big.size()), 1, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) did_split[j] = builder.split(big[j], kids[2 * j], kids[2 * j + 1]);
    });
    for (size_t j = 0; j < big.size(); ++j) {
      if (did_split[j]) next.insert(next.end(), {kids[2 * j], kids[2 * j + 1]});
    }
    tasks = std::move(next);
  }

  // Largest first, handed out dynamically: the batches may differ in size.
  std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.size() > b.size(); });
  std::atomic<int64_t> next_task{0};
  const int64_t num_tasks = int64_t(tasks.size());
  at::parallel_for(0, std::min(threads, num_tasks), 1, [&](int64_t, int64_t) {
    for (int64_t j = next_task.fetch_add(1); j < num_tasks; j = next_task.fetch_add(1)) builder.build(tasks[j]);
  });

  int64_t* pm = perm.data_ptr<int64_t>();
  at::parallel_for(0, N, 1 << 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) pm[i] = items[i].id;
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kdtree_build_cpu(const at::Tensor& points_in,
                                                                            const at::Tensor& batch_ptr_in,
                                                                            int64_t leaf_size) {
  const int64_t D = check_points(points_in, "points");
  check_same_device(batch_ptr_in, "batch_ptr", points_in, "points");
  const int64_t N = points_in.size(0);
  check_row_ptr(batch_ptr_in, N, "batch_ptr", "the number of points");
  TORCH_CHECK_VALUE(leaf_size >= 1, "leaf_size must be >= 1, got ", leaf_size);
  const auto points = points_in.contiguous();
  const auto batch_ptr = batch_ptr_in.contiguous();
  const int64_t B = batch_ptr.numel() - 1;
  const int64_t* bp = batch_ptr.const_data_ptr<int64_t>();

  // Batch ranges are checked even with input checks off (O(B)): a bad range
  // would make the build read outside points.
  auto roots = at::empty({B}, batch_ptr.options());
  int64_t* rt = roots.data_ptr<int64_t>();
  std::vector<Task> tasks;
  int64_t num_nodes = 0;
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK_VALUE(0 <= bp[b] && bp[b] <= bp[b + 1] && bp[b + 1] <= N, "batch_ptr must be non-decreasing within [0, ",
                      N, "] (the number of points)");
    const int64_t n = bp[b + 1] - bp[b];
    rt[b] = n > 0 ? num_nodes : -1;
    if (n > 0) {
      tasks.push_back({num_nodes, bp[b], bp[b + 1]});
      num_nodes += count_nodes(n, leaf_size);
    }
  }

  auto perm = at::empty({N}, batch_ptr.options());
  auto nodes = at::empty({num_nodes, 4}, batch_ptr.options());
  auto bounds = at::empty({num_nodes, 2, D}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "kdtree_build", [&] {
    if (D == 2) {
      build_trees<scalar_t, 2>(points, std::move(tasks), leaf_size, perm, nodes, bounds);
    } else {
      build_trees<scalar_t, 3>(points, std::move(tasks), leaf_size, perm, nodes, bounds);
    }
  });
  return {perm, nodes, bounds, roots};
}

}  // namespace pyengine::neighbors
