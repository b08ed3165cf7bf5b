#pragma once
// nvcuda::wmma on the pye_simt emulator (the TF32 and float/double subset).
//
// A fragment holds the whole tile in every lane (num_elements = rows * cols,
// row-major), so element-wise loops over frag.x[i] behave as on the GPU, where
// each lane holds a slice in an unspecified order. The collective operations
// keep what matters for checking kernels:
//   * load_matrix_sync reads the tile when the calling lane runs: data other
//     lanes wrote without a __syncwarp / __syncthreads in between is not there yet;
//   * store_matrix_sync writes only the calling lane's share of the tile
//     (elements i with i % 32 == lane), so reading the tile back needs a barrier;
//   * pointers must be 256-bit aligned and ldm a multiple of 16 bytes, as on the GPU;
//   * mma_sync on tf32 fragments ignores the 13 low mantissa bits of A and B, as
//     the tensor cores do, and accumulates in float.
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "pye_simt/runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  using element_type = std::conditional_t<std::is_same_v<T, precision::tf32>, float, T>;
  static constexpr bool is_tf32 = std::is_same_v<T, precision::tf32>;
  static constexpr int num_elements = rows * cols;
  element_type x[num_elements];
};

inline float __float_to_tf32(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) {  // finite: round to nearest, ties away, 10 mantissa bits
    b += 0x1000u;
    b &= 0xffffe000u;
  }
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}

namespace detail {

inline float truncate_tf32(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  b &= 0xffffe000u;
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}

template <typename E>
inline void check_pointer(const E* p, unsigned ldm, int min_ldm, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    pye_simt::fail(std::string("wmma::") + what + ": the pointer is not 256-bit aligned");
  if ((size_t(ldm) * sizeof(E)) % 16 != 0)
    pye_simt::fail(std::string("wmma::") + what + ": ldm (" + std::to_string(ldm) + ") is not a multiple of 16 bytes");
  if (int(ldm) < min_ldm)
    pye_simt::fail(std::string("wmma::") + what + ": ldm (" + std::to_string(ldm) + ") is shorter than a tile row");
}

template <typename F, typename E>
inline void load(F& f, const E* p, unsigned ldm, bool row_major_mem) {
  check_pointer(p, ldm, row_major_mem ? F::cols : F::rows, "load_matrix_sync");
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = row_major_mem ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major>& f, const E* p, unsigned ldm) {
  detail::load(f, p, ldm, true);
}
template <typename Use, int M, int N, int K, typename T, typename E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, col_major>& f, const E* p, unsigned ldm) {
  detail::load(f, p, ldm, false);
}
template <int M, int N, int K, typename T, typename E>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const E* p, unsigned ldm, layout_t layout) {
  detail::load(f, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K, typename T, typename E>
inline void store_matrix_sync(E* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  using F = fragment<accumulator, M, N, K, T>;
  const bool rm = layout == mem_row_major;
  detail::check_pointer(p, ldm, rm ? F::cols : F::rows, "store_matrix_sync");
  const int lane = pye_simt::lane_id();
  for (int i = lane; i < F::num_elements; i += 32) {
    const int r = i / F::cols, c = i % F::cols;
    p[rm ? size_t(r) * ldm + c : size_t(c) * ldm + r] = f.x[i];
  }
}

template <typename Use, int M, int N, int K, typename T, typename L, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = static_cast<typename fragment<Use, M, N, K, T, L>::element_type>(v);
}

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  using A = fragment<matrix_a, M, N, K, TA, LA>;
  using B = fragment<matrix_b, M, N, K, TB, LB>;
  TC out[M * N];
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      TC s = c.x[m * N + n];
      for (int k = 0; k < K; ++k) {
        TC av = a.x[m * K + k], bv = b.x[k * N + n];
        if constexpr (A::is_tf32) av = detail::truncate_tf32(av);
        if constexpr (B::is_tf32) bv = detail::truncate_tf32(bv);
        s += av * bv;
      }
      out[m * N + n] = s;
    }
  }
  std::memcpy(d.x, out, sizeof(out));
}

}  // namespace wmma
}  // namespace nvcuda
