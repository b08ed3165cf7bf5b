#pragma once
// Argument checks shared by every op. Messages name the argument, so users see
// "row_ptr must be int64" rather than a failure deep inside a kernel.
// TORCH_CHECK_VALUE / TORCH_CHECK_TYPE surface in Python as ValueError / TypeError.
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace pyengine {

// Switch for the data-dependent checks (row_ptr monotone, indices in range,
// tree structure). It is thread-local: turning it off affects only the calling
// thread. They cost one device sync on CUDA; users who validated their graphs
// once may turn them off there (pyengine.ops.set_input_checks(False)).
bool input_checks_enabled();
void set_input_checks_enabled(bool enabled);
// Whether the data checks of a tensor run: always on the CPU (no sync to save, and
// the checks are what keeps a bad index from reading out of bounds), else the switch.
bool data_checks_for(const at::Tensor& t);

void check_dim(const at::Tensor& t, int64_t dim, const char* name);
void check_index_dtype(const at::Tensor& t, const char* name, bool allow_int32);
void check_float_dtype(const at::Tensor& t, const char* name);
void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name);
void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name);

// Structural and (if enabled) data checks of a CSR row pointer:
// 1-D int64 of length >= 1, row_ptr[0] == 0, non-decreasing, row_ptr[-1] == num_edges.
void check_row_ptr(const at::Tensor& row_ptr, int64_t num_edges, const char* name, const char* edges_desc);

// Column indices: 1-D int32/int64 of length num_edges, values in [0, num_cols).
void check_col(const at::Tensor& col, int64_t num_edges, int64_t num_cols, const char* name, const char* cols_desc);

}  // namespace pyengine
