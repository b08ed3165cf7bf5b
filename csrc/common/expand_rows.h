#pragma once
// Row index of every entry of a CSR structure (ATen ops, any device).
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace pyengine {

// lens (M,) int64 row lengths summing to `total` -> (total,) int64 [0, 0, 1, 2, 2, ...].
// Spelled out once because at::repeat_interleave(lens, total) with an int64 `total`
// binds to repeat_interleave(self, int repeats) and silently repeats `lens` itself.
inline at::Tensor expand_rows(const at::Tensor& lens, int64_t total) {
  return at::repeat_interleave(lens, std::optional<int64_t>(total));
}

}  // namespace pyengine
