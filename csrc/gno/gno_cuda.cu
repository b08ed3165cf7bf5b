// CUDA entry points of the fused GNO integral, registered for the CUDA key.
//
// Which kernel runs follows PyTorch's own float32 matmul policy, so the fused
// op is exactly as precise as the torch.matmul calls around it:
//   * float32 with TF32 allowed (torch.set_float32_matmul_precision("high") or
//     torch.backends.cuda.matmul.allow_tf32 = True) on sm_80+: tensor cores, TF32
//     inputs, float32 accumulation (gno_tc_cuda.cu), about 1e-3 relative error;
//   * float32 otherwise (PyTorch's default) and float64: FMA kernels exact to
//     the input precision (gno_fma_cuda.cu).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "gno/gno_cuda.cuh"

namespace pyengine::gno {
namespace {

void check_channels(const GnoArgs& a) {
  TORCH_CHECK_VALUE(a.channels <= cuda::kMaxChannels, "the fused CUDA GNO kernel supports at most ",
                    cuda::kMaxChannels, " channels, got ", a.channels, "; use GNOIntegral(..., fused=False)");
}

bool use_tensor_cores(const GnoArgs& a) {
  return a.y.scalar_type() == at::kFloat && at::globalContext().allowTF32CuBLAS() &&
         pyengine::cuda::device_attribute(cudaDevAttrComputeCapabilityMajor) >= 8;  // TF32 needs sm_80+
}

}  // namespace

at::Tensor gno_integral_cuda(const at::Tensor& y, const at::Tensor& x, const at::Tensor& row_ptr,
                             const at::Tensor& col, const std::optional<at::Tensor>& f_y,
                             const std::optional<at::Tensor>& weights, const std::optional<at::Tensor>& edge_weights,
                             const at::Tensor& params, at::IntArrayRef dims, c10::string_view activation,
                             c10::string_view transform, c10::string_view reduction) {
  const GnoArgs a =
      check_gno_args(y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction);
  check_channels(a);
  c10::cuda::CUDAGuard guard(y.device());
  auto out = at::zeros({a.num_rows, a.channels}, a.y.options());
  if (a.num_rows == 0 || a.num_edges == 0) return out;
  if (use_tensor_cores(a)) {
    cuda::tc_forward(a, out);
  } else {
    cuda::fma_forward(a, out);
  }
  return out;
}

GnoGrads gno_integral_backward_cuda(const at::Tensor& grad_out, const at::Tensor& y, const at::Tensor& x,
                                    const at::Tensor& row_ptr, const at::Tensor& col,
                                    const std::optional<at::Tensor>& f_y, const std::optional<at::Tensor>& weights,
                                    const std::optional<at::Tensor>& edge_weights, const at::Tensor& params,
                                    at::IntArrayRef dims, c10::string_view activation, c10::string_view transform,
                                    c10::string_view reduction, std::array<bool, 5> need) {
  const GnoArgs a =
      check_gno_args(y, x, row_ptr, col, f_y, weights, edge_weights, params, dims, activation, transform, reduction);
  check_channels(a);
  const at::Tensor g = check_gno_grad_out(grad_out, a);
  const GnoNeed nd = parse_need(need);
  c10::cuda::CUDAGuard guard(y.device());
  auto opts = a.y.options();
  auto zeros_if = [&](bool flag, at::IntArrayRef shape) { return flag ? at::zeros(shape, opts) : at::empty({0}, opts); };
  cuda::GnoGradTensors grads;
  grads.y = zeros_if(nd.y, a.y.sizes());
  grads.x = zeros_if(nd.x, a.x.sizes());
  grads.f = zeros_if(nd.f_y && a.f_y.defined(), {a.num_cols, a.f_channels});
  grads.w = zeros_if(nd.weights && a.weights.defined(), {a.num_cols});
  grads.ew = zeros_if(nd.edge_weights && a.edge_weights.defined(), {a.num_edges});
  grads.params = at::zeros_like(a.params);
  if (a.num_rows > 0 && a.num_edges > 0) {
    if (use_tensor_cores(a)) {
      cuda::tc_backward(a, g, grads);
    } else {
      cuda::fma_backward(a, g, grads);
    }
  }
  return {grads.y, grads.x, grads.f, grads.w, grads.ew, grads.params};
}

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("gno_integral", &gno_integral_cuda);
  m.impl("gno_integral_backward", &gno_integral_backward_cuda);
}

}  // namespace pyengine::gno
