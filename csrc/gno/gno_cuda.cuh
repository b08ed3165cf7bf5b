#pragma once
// Pieces shared by the two CUDA implementations of the fused GNO integral:
//   gno_fma_cuda.cu  float64, and float32 when TF32 is off: plain FMA, exact to
//                    the input precision (one warp per row or row piece);
//   gno_tc_cuda.cu   float32 with TF32 allowed: the per-edge MLP on tensor cores
//                    (WMMA TF32, float32 accumulation), 16 edges per warp tile.
// gno_cuda.cu picks one per call (see there) and registers the ops.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "common/csr_search.h"
#include "common/cuda_launch.cuh"
#include "gno/gno.h"

namespace pyengine::gno::cuda {

template <typename T>
__device__ __forceinline__ T act_f(int act, T v) {
  switch (act) {
    case int(Activation::Gelu): return T(0.5) * v * (T(1) + erf(v * T(0.70710678118654752440)));
    case int(Activation::Relu): return v > T(0) ? v : T(0);
    case int(Activation::Silu): return v / (T(1) + exp(-v));
    default: return tanh(v);
  }
}

// d act / d v at v.
template <typename T>
__device__ __forceinline__ T act_d(int act, T v) {
  switch (act) {
    case int(Activation::Gelu): {
      const T cdf = T(0.5) * (T(1) + erf(v * T(0.70710678118654752440)));
      return cdf + v * exp(T(-0.5) * v * v) * T(0.39894228040143267794);
    }
    case int(Activation::Relu): return v > T(0) ? T(1) : T(0);
    case int(Activation::Silu): {
      const T s = T(1) / (T(1) + exp(-v));
      return s * (T(1) + v * (T(1) - s));
    }
    default: {
      const T t = tanh(v);
      return T(1) - t * t;
    }
  }
}

// Largest warp count (<= max_warps) whose shared memory fits the device's opt-in limit.
inline int pick_warps(int64_t fixed_bytes, int64_t per_warp_bytes, int max_warps, const char* what) {
  const int limit = pyengine::cuda::device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  int warps = max_warps;
  while (warps > 0 && fixed_bytes + warps * per_warp_bytes > limit) --warps;
  TORCH_CHECK_VALUE(warps > 0, "the fused CUDA GNO ", what, " needs ", fixed_bytes + per_warp_bytes,
                    " bytes of shared memory for this MLP, more than the device allows (", limit,
                    "); use narrower hidden layers or GNOIntegral(..., fused=False)");
  return warps;
}

// CTAs for `work` units of which one CTA takes `per_cta` at a time: enough to
// cover them, at most as many as fit on the device at once (persistent CTAs).
inline int persistent_grid(int64_t work, int64_t per_cta, int64_t smem_bytes) {
  const int sms = pyengine::cuda::device_attribute(cudaDevAttrMultiProcessorCount);
  const int smem_per_sm = pyengine::cuda::device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor);
  const int per_sm = std::max<int>(1, int(smem_per_sm / std::max<int64_t>(smem_bytes, 1)));
  const int64_t needed = (work + per_cta - 1) / per_cta;
  return int(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t(sms) * per_sm)));
}

// Output-gradient tensors of the backward (empty where not requested; grad_params always).
struct GnoGradTensors {
  at::Tensor y, x, f, w, ew, params;
};

// The tensors' data pointers, set the same way in both implementations' kernel
// parameter structs (whose members share these names).
template <typename T, typename Params>
void set_input_pointers(Params& p, const GnoArgs& a) {
  p.x = a.x.const_data_ptr<T>();
  p.y = a.y.const_data_ptr<T>();
  p.f = a.f_y.defined() ? a.f_y.const_data_ptr<T>() : nullptr;
  p.w = a.weights.defined() ? a.weights.const_data_ptr<T>() : nullptr;
  p.ew = a.edge_weights.defined() ? a.edge_weights.const_data_ptr<T>() : nullptr;
  p.prm = a.params.const_data_ptr<T>();
  p.rp = a.row_ptr.const_data_ptr<int64_t>();
}

template <typename T, typename Params>
void set_grad_pointers(Params& p, const at::Tensor& grad_out, GnoGradTensors& g) {
  auto ptr = [](at::Tensor& t) { return t.numel() ? t.data_ptr<T>() : nullptr; };
  p.g = grad_out.const_data_ptr<T>();
  p.gy = ptr(g.y);
  p.gx = ptr(g.x);
  p.gf = ptr(g.f);
  p.gw = ptr(g.w);
  p.gew = ptr(g.ew);
  p.gprm = g.params.data_ptr<T>();
}

// The channel limit of both implementations (a lane holds up to 8 channels of a row).
constexpr int64_t kMaxChannels = 256;

void fma_forward(const GnoArgs& a, at::Tensor& out);
void fma_backward(const GnoArgs& a, const at::Tensor& grad_out, GnoGradTensors& g);
void tc_forward(const GnoArgs& a, at::Tensor& out);
void tc_backward(const GnoArgs& a, const at::Tensor& grad_out, GnoGradTensors& g);

}  // namespace pyengine::gno::cuda
