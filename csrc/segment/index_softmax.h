#pragma once
// (Log-)softmax over the groups of an unsorted index (PyG's softmax(src, index)):
// out[e, c] = softmax over {e' : index[e'] == index[e]} of src[., c], with no sort.
// The group statistics (max, sum of exp(x - max)), then every entry (softmax_value /
// softmax_grad of segment/functors.h, shared with the CSR path). The CPU folds the
// statistics in one online pass, every thread owning a contiguous range of groups and
// scanning the whole index (no atomics, no per-thread tables, no false sharing); CUDA
// takes two atomic passes (maxima, then sums).
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace pyengine::segment {

// Validated, contiguous arguments: values (E, C) floating, index (E,) int64 in [0, num_nodes).
struct IndexArgs {
  at::Tensor src, index;
  int64_t num_edges, channels, num_nodes;
};
IndexArgs check_index_args(const at::Tensor& src, const at::Tensor& index, int64_t num_nodes, const char* src_name);
// The same for a backward: out as above, grad_out of its shape and dtype (returned contiguous in grad).
IndexArgs check_index_backward_args(const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& index,
                                    int64_t num_nodes, at::Tensor& grad);

// An order-preserving map of floats to unsigned integers (for an atomic max on the bits):
// -inf < ... < +inf < NaN (every NaN canonical), and 0 below all of them (the empty group).
PYE_HD uint32_t ordered_bits(float x) {
  if (x != x) return 0xffffffffu;
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
PYE_HD unsigned long long ordered_bits(double x) {
  if (x != x) return 0xffffffffffffffffull;
  unsigned long long b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
}
PYE_HD float from_ordered_bits(uint32_t b) {
  b = (b & 0x80000000u) ? (b & 0x7fffffffu) : ~b;
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
PYE_HD double from_ordered_bits(unsigned long long b) {
  b = (b & 0x8000000000000000ull) ? (b & 0x7fffffffffffffffull) : ~b;
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

#define PYE_INDEX_SOFTMAX_DECLARE(DEV)                                                                         \
  at::Tensor index_softmax_##DEV(const at::Tensor& src, const at::Tensor& index, int64_t num_nodes, bool log); \
  at::Tensor index_softmax_backward_##DEV(const at::Tensor& grad_out, const at::Tensor& out,                   \
                                          const at::Tensor& index, int64_t num_nodes, bool log);
PYE_INDEX_SOFTMAX_DECLARE(cpu)
PYE_INDEX_SOFTMAX_DECLARE(cuda)
#undef PYE_INDEX_SOFTMAX_DECLARE

}  // namespace pyengine::segment
