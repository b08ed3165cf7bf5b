// CPU farthest point sampling. Small clouds run one per thread (at::parallel_for
// over clouds); a large cloud is split over the threads of one OpenMP team that
// stays alive for all its iterations (per-thread arg-max, then one pick).
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "sampling/sampling.h"

namespace pyengine::sampling {
namespace {

constexpr int64_t kParallelCloud = 8192;  // clouds at least this large use all threads

template <typename scalar_t>
inline scalar_t sq_dist(const scalar_t* x, const scalar_t* y, int64_t D) {
  scalar_t acc = 0;
  for (int64_t c = 0; c < D; ++c) {
    const scalar_t d = x[c] - y[c];
    acc += d * d;
  }
  return acc;
}

// Samples `count` points of the cloud P (n, D) starting at `first`; writes local indices + offset.
template <typename scalar_t>
void fps_serial(const scalar_t* P, int64_t n, int64_t D, int64_t first, int64_t count, int64_t offset,
                int64_t* out) {
  if (count <= 0) return;
  std::vector<scalar_t> mind(n, std::numeric_limits<scalar_t>::infinity());
  int64_t cur = first;
  out[0] = offset + cur;
  for (int64_t it = 1; it < count; ++it) {
    const scalar_t* c = P + cur * D;
    scalar_t best = -1;
    int64_t arg = 0;
    for (int64_t j = 0; j < n; ++j) {
      const scalar_t d = sq_dist(P + j * D, c, D);
      if (d < mind[j]) mind[j] = d;
      if (mind[j] > best) {
        best = mind[j];
        arg = j;
      }
    }
    cur = arg;
    out[it] = offset + cur;
  }
}

template <typename scalar_t>
void fps_team(const scalar_t* P, int64_t n, int64_t D, int64_t first, int64_t count, int64_t offset, int64_t* out) {
  if (count <= 0) return;
  const int nt = std::max(1, at::get_num_threads());
  std::vector<scalar_t> mind(n, std::numeric_limits<scalar_t>::infinity());
  std::vector<scalar_t> tbest(nt);
  std::vector<int64_t> targ(nt);
  int64_t cur = first;
  out[0] = offset + cur;
  // omp-nothrow: the region only does arithmetic on buffers allocated above (no allocation, no
  // checks), and a try/catch around its barriers would deadlock the team if one thread left.
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int team = omp_get_num_threads();
    const int64_t chunk = (n + team - 1) / team;
    const int64_t j0 = std::min(n, tid * chunk), j1 = std::min(n, j0 + chunk);
    for (int64_t it = 1; it < count; ++it) {
      const scalar_t* c = P + cur * D;
      scalar_t best = -1;
      int64_t arg = j0;
      for (int64_t j = j0; j < j1; ++j) {
        const scalar_t d = sq_dist(P + j * D, c, D);
        if (d < mind[j]) mind[j] = d;
        if (mind[j] > best) {
          best = mind[j];
          arg = j;
        }
      }
      tbest[tid] = best;
      targ[tid] = arg;
#pragma omp barrier
#pragma omp single
      {
        scalar_t b = -1;
        int64_t a = 0;
        for (int t = 0; t < team; ++t) {  // threads hold ascending ranges: strict > keeps the lowest index
          if (tbest[t] > b) {
            b = tbest[t];
            a = targ[t];
          }
        }
        cur = a;
        out[it] = offset + cur;
      }  // implicit barrier: every thread sees the new cur
    }
  }
}

}  // namespace

at::Tensor fps_cpu(const at::Tensor& points, const at::Tensor& ptr_in, const at::Tensor& out_ptr_in,
                   const at::Tensor& start_in) {
  const FpsArgs a = check_fps_args(points, ptr_in, out_ptr_in, start_in);
  const int64_t B = a.num_batches;
  const int64_t* ptr = a.ptr.const_data_ptr<int64_t>();
  const int64_t* optr = a.out_ptr.const_data_ptr<int64_t>();
  const int64_t* start = a.start.const_data_ptr<int64_t>();
  const int64_t total = B > 0 ? std::max<int64_t>(optr[B], 0) : 0;
  auto out = at::empty({total}, a.ptr.options());
  if (total == 0) return out;
  int64_t* o = out.data_ptr<int64_t>();
  // Each cloud's (offset, size, first, out offset, count), clamped so that unchecked inputs stay in bounds.
  auto span = [&](int64_t b, int64_t& p0, int64_t& n, int64_t& first, int64_t& o0, int64_t& cnt) {
    p0 = std::clamp<int64_t>(ptr[b], 0, a.num_points);
    n = std::clamp<int64_t>(ptr[b + 1] - p0, 0, a.num_points - p0);
    first = n > 0 ? std::clamp<int64_t>(start[b], 0, n - 1) : 0;
    o0 = std::clamp<int64_t>(optr[b], 0, total);
    cnt = std::clamp<int64_t>(std::min(optr[b + 1] - o0, n), 0, total - o0);
  };
  AT_DISPATCH_FLOATING_TYPES(a.points.scalar_type(), "fps_cpu", [&] {
    const scalar_t* P = a.points.const_data_ptr<scalar_t>();
    const int64_t D = a.dim;
    std::vector<int64_t> small;
    for (int64_t b = 0; b < B; ++b) {
      int64_t p0, n, first, o0, cnt;
      span(b, p0, n, first, o0, cnt);
      if (n >= kParallelCloud && at::get_num_threads() > 1) {
        fps_team<scalar_t>(P + p0 * D, n, D, first, cnt, p0, o + o0);
      } else {
        small.push_back(b);
      }
    }
    at::parallel_for(0, int64_t(small.size()), 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        int64_t p0, n, first, o0, cnt;
        span(small[i], p0, n, first, o0, cnt);
        fps_serial<scalar_t>(P + p0 * D, n, D, first, cnt, p0, o + o0);
      }
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) { m.impl("fps", &fps_cpu); }

}  // namespace pyengine::sampling
