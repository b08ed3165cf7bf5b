// Device-independent argument checks of fps.
#include "common/checks.h"
#include "sampling/sampling.h"

namespace pyengine::sampling {

FpsArgs check_fps_args(const at::Tensor& points, const at::Tensor& ptr, const at::Tensor& out_ptr,
                       const at::Tensor& start) {
  check_dim(points, 2, "points");
  const auto s = points.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble, "points must be float32 or float64, got ", s,
                   " (pyengine.pyg.fps converts float16/bfloat16 to float32 first)");
  TORCH_CHECK_VALUE(points.size(1) >= 1, "points must have at least one coordinate per row, got shape ",
                    points.sizes());
  check_same_device(ptr, "ptr", points, "points");
  check_same_device(out_ptr, "out_ptr", points, "points");
  check_same_device(start, "start", points, "points");
  check_row_ptr(ptr, points.size(0), "ptr", "the number of points");
  check_dim(out_ptr, 1, "out_ptr");
  check_index_dtype(out_ptr, "out_ptr", /*allow_int32=*/false);
  check_dim(start, 1, "start");
  check_index_dtype(start, "start", /*allow_int32=*/false);
  const int64_t B = ptr.numel() - 1;
  TORCH_CHECK_VALUE(out_ptr.numel() == B + 1, "out_ptr must have length B + 1 = ", B + 1, " like ptr, got ",
                    out_ptr.numel());
  TORCH_CHECK_VALUE(start.numel() == B, "start must have one entry per cloud (", B, "), got ", start.numel());
  if (input_checks_enabled() && B > 0) {
    const auto sizes = ptr.narrow(0, 1, B) - ptr.narrow(0, 0, B);
    const auto counts = out_ptr.narrow(0, 1, B) - out_ptr.narrow(0, 0, B);
    const auto conds = at::stack({out_ptr.select(0, 0).eq(0), counts.ge(0).all(), counts.le(sizes).all(),
                                  start.ge(0).all(), (start.lt(sizes) | sizes.eq(0)).all()})
                           .to(at::kCPU);
    const auto f = conds.accessor<bool, 1>();
    TORCH_CHECK_VALUE(f[0], "out_ptr[0] must be 0");
    TORCH_CHECK_VALUE(f[1], "out_ptr must be non-decreasing");
    TORCH_CHECK_VALUE(f[2], "out_ptr asks a cloud for more samples than it has points");
    TORCH_CHECK_VALUE(f[3] && f[4], "start must lie in [0, cloud size) for every non-empty cloud");
  }
  return {points.contiguous(), ptr.contiguous(), out_ptr.contiguous(), start.contiguous(), points.size(0),
          points.size(1), B};
}

}  // namespace pyengine::sampling
