#include "common/checks.h"

#include <ATen/Parallel.h>

#include <atomic>

namespace pyengine {
namespace {
// Thread-local: switching the checks off in one thread (a `with input_checks(False)`
// block) never turns them off for another thread's calls.
thread_local bool t_input_checks = true;

// Evaluates several boolean device tensors with a single host transfer and
// raises the message of the first one that is false.
void raise_first_failed(const std::vector<at::Tensor>& conds, const std::vector<std::string>& messages) {
  if (conds.empty()) return;
  auto host = at::stack(conds).to(at::kCPU);
  auto flags = host.accessor<bool, 1>();
  for (size_t i = 0; i < conds.size(); ++i) {
    TORCH_CHECK_VALUE(flags[i], messages[i]);
  }
}
}  // namespace

bool input_checks_enabled() { return t_input_checks; }
void set_input_checks_enabled(bool enabled) { t_input_checks = enabled; }
bool data_checks_for(const at::Tensor& t) { return t_input_checks || t.is_cpu(); }

void check_dim(const at::Tensor& t, int64_t dim, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must be ", dim, "-D, got shape ", t.sizes());
}

void check_index_dtype(const at::Tensor& t, const char* name, bool allow_int32) {
  const bool ok = t.scalar_type() == at::kLong || (allow_int32 && t.scalar_type() == at::kInt);
  TORCH_CHECK_TYPE(ok, name, " must be ", allow_int32 ? "int64 or int32" : "int64", ", got ", t.scalar_type());
}

void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  const bool ok = s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16;
  TORCH_CHECK_TYPE(ok, name, " must be float32, float64, float16 or bfloat16, got ", s);
}

void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK_VALUE(a.device() == b.device(), a_name, " is on ", a.device(), " but ", b_name, " is on ", b.device(),
                    "; move both to the same device");
}

void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), a_name, " has dtype ", a.scalar_type(), " but ", b_name,
                   " has dtype ", b.scalar_type());
}

// One pass over a CPU row pointer, without temporaries.
static void check_row_ptr_cpu(const at::Tensor& row_ptr, int64_t num_edges, const char* name, const char* edges_desc) {
  const auto rp = row_ptr.contiguous();
  const int64_t* p = rp.const_data_ptr<int64_t>();
  const int64_t n = rp.numel();
  TORCH_CHECK_VALUE(p[0] == 0, name, "[0] must be 0");
  TORCH_CHECK_VALUE(p[n - 1] == num_edges, name, "[-1] must equal ", edges_desc, " (", num_edges, ")");
  std::atomic<bool> sorted{true};
  at::parallel_for(1, n, 1 << 16, [&](int64_t i0, int64_t i1) {
    bool ok = true;
    for (int64_t i = i0; i < i1; ++i) ok &= p[i] >= p[i - 1];
    if (!ok) sorted.store(false, std::memory_order_relaxed);
  });
  TORCH_CHECK_VALUE(sorted.load(), name, " must be non-decreasing (a CSR row pointer sorted by row)");
}

void check_row_ptr(const at::Tensor& row_ptr, int64_t num_edges, const char* name, const char* edges_desc) {
  check_dim(row_ptr, 1, name);
  check_index_dtype(row_ptr, name, /*allow_int32=*/false);
  TORCH_CHECK_VALUE(row_ptr.numel() >= 1, name, " must have length num_rows + 1 >= 1, got an empty tensor");
  if (!data_checks_for(row_ptr)) return;
  if (row_ptr.is_cpu()) return check_row_ptr_cpu(row_ptr, num_edges, name, edges_desc);
  std::vector<at::Tensor> conds;
  std::vector<std::string> msgs;
  conds.push_back(row_ptr.select(0, 0).eq(0));
  msgs.push_back(std::string(name) + "[0] must be 0");
  conds.push_back(row_ptr.select(0, -1).eq(num_edges));
  msgs.push_back(std::string(name) + "[-1] must equal " + edges_desc + " (" + std::to_string(num_edges) + ")");
  if (row_ptr.numel() > 1) {
    auto diff = row_ptr.narrow(0, 1, row_ptr.numel() - 1) - row_ptr.narrow(0, 0, row_ptr.numel() - 1);
    conds.push_back(diff.ge(0).all());
    msgs.push_back(std::string(name) + " must be non-decreasing (a CSR row pointer sorted by row)");
  }
  raise_first_failed(conds, msgs);
}

void check_col(const at::Tensor& col, int64_t num_edges, int64_t num_cols, const char* name, const char* cols_desc) {
  check_dim(col, 1, name);
  check_index_dtype(col, name, /*allow_int32=*/true);
  TORCH_CHECK_VALUE(col.size(0) == num_edges, name, " must have one entry per edge (", num_edges, "), got ",
                    col.size(0));
  if (!data_checks_for(col) || num_edges == 0) return;
  auto mm = at::aminmax(col);
  raise_first_failed({std::get<0>(mm).ge(0), std::get<1>(mm).lt(num_cols)},
                     {std::string(name) + " has negative entries",
                      std::string(name) + " has entries >= " + cols_desc + " (" + std::to_string(num_cols) + ")"});
}

}  // namespace pyengine
