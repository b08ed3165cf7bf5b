// CPU (log-)softmax over an unsorted index (segment/index_softmax.h): one parallel region
// for the group statistics (the online max / sum-of-exp state of the CSR path, LogSumExpOp,
// in a single pass), in which thread t owns the groups [n0, n1) and scans the whole index
// for their entries (index reads repeated per thread, writes never shared), then one
// parallel pass over the entries.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>

#include "common/dispatch.h"
#include "common/reducers.h"
#include "segment/functors.h"
#include "segment/index_softmax.h"

namespace pyengine::segment {
namespace {

// Grain of the group ranges: small problems stay on one thread.
int64_t group_grain(int64_t num_entries, int64_t num_nodes) {
  return num_entries < (1 << 15) ? std::max<int64_t>(num_nodes, 1) : 1;
}

// For every group n and channel c, folds Op over the entries e of the group:
// state[n * C + c] = fold of load(e, c). Thread t owns the groups [n0, n1).
template <class Op, class Load>
void group_fold(const int64_t* index, int64_t E, int64_t C, int64_t N, typename Op::State* state, const Load& load) {
  at::parallel_for(0, N, group_grain(E * C, N), [&](int64_t n0, int64_t n1) {
    for (int64_t i = n0 * C; i < n1 * C; ++i) state[i] = Op::init();
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = index[e];
      if (n < n0 || n >= n1) continue;
      typename Op::State* s = state + n * C;
      for (int64_t c = 0; c < C; ++c) Op::push(s[c], load(e, c), e);
    }
  });
}

}  // namespace

at::Tensor index_softmax_cpu(const at::Tensor& src_in, const at::Tensor& index_in, int64_t num_nodes, bool log) {
  const IndexArgs a = check_index_args(src_in, index_in, num_nodes, "src");
  const int64_t E = a.num_edges, C = a.channels, N = a.num_nodes;
  auto out = at::empty_like(a.src);
  if (E == 0 || C == 0) return out;
  const int64_t* index = a.index.const_data_ptr<int64_t>();
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "index_softmax", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = a.src.const_data_ptr<scalar_t>();
    // one pass of the online softmax statistics (max, sum of exp(x - max)) per group
    using Op = LogSumExpOp<acc_t>;
    std::vector<typename Op::State> st(N * C);
    group_fold<Op>(index, E, C, N, st.data(), [&](int64_t e, int64_t c) { return acc_t(x[e * C + c]); });
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, E, std::max<int64_t>(1, 16384 / C), [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        if (index[e] < 0 || index[e] >= N) {  // only reachable with input checks off
          for (int64_t c = 0; c < C; ++c) o[e * C + c] = std::numeric_limits<scalar_t>::quiet_NaN();
          continue;
        }
        const int64_t i = index[e] * C;
        for (int64_t c = 0; c < C; ++c)
          o[e * C + c] = static_cast<scalar_t>(softmax_value(acc_t(x[e * C + c]), st[i + c].m, st[i + c].s, log));
      }
    });
  });
  return out;
}

at::Tensor index_softmax_backward_cpu(const at::Tensor& grad_in, const at::Tensor& out_in, const at::Tensor& index_in,
                                      int64_t num_nodes, bool log) {
  at::Tensor grad;
  const IndexArgs a = check_index_backward_args(grad_in, out_in, index_in, num_nodes, grad);
  const int64_t E = a.num_edges, C = a.channels, N = a.num_nodes;
  auto grad_src = at::empty_like(a.src);
  if (E == 0 || C == 0) return grad_src;
  const int64_t* index = a.index.const_data_ptr<int64_t>();
  PYE_DISPATCH_FLOATING(a.src.scalar_type(), "index_softmax_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const scalar_t* y = a.src.const_data_ptr<scalar_t>();
    std::vector<typename SumOp<acc_t>::State> s(N * C);
    group_fold<SumOp<acc_t>>(index, E, C, N, s.data(), [&](int64_t e, int64_t c) {
      return softmax_grad_load(acc_t(g[e * C + c]), acc_t(y[e * C + c]), log);
    });
    scalar_t* gs = grad_src.data_ptr<scalar_t>();
    at::parallel_for(0, E, std::max<int64_t>(1, 16384 / C), [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        if (index[e] < 0 || index[e] >= N) {  // only reachable with input checks off
          for (int64_t c = 0; c < C; ++c) gs[e * C + c] = std::numeric_limits<scalar_t>::quiet_NaN();
          continue;
        }
        const int64_t i = index[e] * C;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t k = e * C + c;
          gs[k] = static_cast<scalar_t>(softmax_grad(acc_t(g[k]), acc_t(y[k]), s[i + c].v, log));
        }
      }
    });
  });
  return grad_src;
}

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("index_softmax", &index_softmax_cpu);
  m.impl("index_softmax_backward", &index_softmax_backward_cpu);
}

}  // namespace pyengine::segment
