// Fused GNO kernel integral on CUDA, FMA version: float64, and float32 when
// TF32 is not allowed (gno_cuda.cu chooses; gno_tc_cuda.cu is the tensor-core
// version). One warp per work item, persistent CTAs.
//
// Work items are rows, or pieces of at most pyengine::cuda::kChunk (1024) edges of the
// longer rows (the shared CSR engine's decomposition, common/csr_engine_cuda),
// so one huge row is spread over many warps; pieces of a split row add into
// its output with atomics, whole rows store it directly.
//
// Each CTA copies the MLP parameters into shared memory once; its warps then
// take items in a grid-stride loop and walk each item's edges 32 at a time, one
// edge per lane. A lane evaluates its edge's whole MLP in a per-warp shared
// tile laid out [feature][edge] with a row stride of 33 (so lanes reading one
// feature of different edges, and lanes reading different features of one
// edge, hit distinct banks); the weights are read as warp-wide broadcasts.
// The messages are then reduced over the 32 edges with lanes over channels,
// so a row's sum stays in registers and is written once. Nothing per edge
// reaches global memory.
//
// Backward recomputes the tiles of every layer for 32 edges, backpropagates
// them in the same layout, accumulates the parameter gradients in shared memory
// (one global atomicAdd per parameter per CTA at the end), the x gradient of the
// warp's own row with a warp reduction, and the column-indexed gradients (f_y,
// weights, y) with global atomics.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "common/csr_engine_cuda.cuh"
#include "gno/gno_cuda.cuh"

namespace pyengine::gno::cuda {
namespace {

constexpr int kLd = 33;     // stride (in edges) between the features of a tile
constexpr int kMaxCh = 8;   // channels per lane: C <= 256
constexpr int kMaxWarps = 8;

template <typename T, typename index_t>
struct GnoParams {
  const T *x, *y, *f, *w, *ew, *prm, *g;
  const int64_t* rp;
  const int64_t* item_row;    // null when items are rows
  const int64_t* item_chunk;
  int64_t num_items;
  const index_t* col;
  T* out;
  T *gy, *gx, *gf, *gw, *gew, *gprm;
  int64_t M;
  int d, C, Cf, L, act, P, widest;  // C: the MLP's output width; Cf: f_y's width
  bool mean, kernel_only, nonlinear, want_input;
  int dims[kMaxLayers + 1], w_off[kMaxLayers], b_off[kMaxLayers];
};

// Lane `lane` evaluates the MLP of the edge (row, j): z[0] gathered, then each
// layer l writes z[l+1] (and its pre-activation into pre[l] when pre[l] is set);
// the last layer writes K. Only column `lane` of the tiles is touched.
template <typename T, typename index_t>
__device__ void lane_mlp_forward(const GnoParams<T, index_t>& a, const T* __restrict__ sp, int64_t row, int64_t j,
                                 T* const* z, T* const* pre, T* K, int lane) {
  T* z0 = z[0];
  for (int k = 0; k < a.d; ++k) {
    z0[k * kLd + lane] = a.x[row * a.d + k];
    z0[(a.d + k) * kLd + lane] = a.y[j * a.d + k];
  }
  if (a.nonlinear) {
    for (int c = 0; c < a.Cf; ++c) z0[(2 * a.d + c) * kLd + lane] = a.f[j * a.Cf + c];
  }
  for (int l = 0; l < a.L; ++l) {
    const int din = a.dims[l], dout = a.dims[l + 1];
    const T* W = sp + a.w_off[l];
    const T* b = sp + a.b_off[l];
    const T* zin = z[l];
    const bool last = l + 1 == a.L;
    T* zout = last ? K : z[l + 1];
    T* p = last ? nullptr : pre[l];
    for (int o = 0; o < dout; ++o) {
      T s = b[o];
      const T* Wo = W + o * din;
      for (int k = 0; k < din; ++k) s = fma(Wo[k], zin[k * kLd + lane], s);
      if (p) p[o * kLd + lane] = s;
      zout[o * kLd + lane] = last ? s : act_f<T>(a.act, s);
    }
  }
}

template <typename T>
__device__ void load_params(const T* __restrict__ src, T* dst, int P) {
  for (int i = threadIdx.x; i < P; i += blockDim.x) dst[i] = src[i];
}

// Shared memory: params (P) | per warp: two tiles of widest x kLd | per warp 32 column indices.
template <typename T, typename index_t>
__global__ void gno_forward_kernel(GnoParams<T, index_t> a) {
  unsigned char* smem_raw = pyengine::cuda::dynamic_smem<unsigned char>();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int64_t* s_col = reinterpret_cast<int64_t*>(smem_raw) + warp * 32;
  T* sp = reinterpret_cast<T*>(smem_raw + sizeof(int64_t) * 32 * warps);
  T* bufA = sp + a.P + int64_t(warp) * 2 * a.widest * kLd;
  T* bufB = bufA + a.widest * kLd;
  load_params(a.prm, sp, a.P);
  __syncthreads();
  T* z[kMaxLayers];
  T* pre[kMaxLayers];
  for (int l = 0; l < kMaxLayers; ++l) {
    z[l] = (l % 2 == 0) ? bufA : bufB;
    pre[l] = nullptr;
  }
  T* K = (a.L % 2 == 0) ? bufA : bufB;

  for (int64_t item = int64_t(blockIdx.x) * warps + warp; item < a.num_items; item += int64_t(gridDim.x) * warps) {
    const pyengine::cuda::ItemRange it = pyengine::cuda::decode_item(a.rp, a.item_row, a.item_chunk, item);
    const int64_t row = it.row, rb = it.beg, re = it.end;
    T acc[kMaxCh];
#pragma unroll
    for (int q = 0; q < kMaxCh; ++q) acc[q] = T(0);
    for (int64_t base = rb; base < re; base += 32) {
      const int n = re - base < 32 ? int(re - base) : 32;
      const int64_t j = lane < n ? int64_t(a.col[base + lane]) : 0;
      s_col[lane] = j;
      lane_mlp_forward<T, index_t>(a, sp, row, j, z, pre, K, lane);
      __syncwarp();
#pragma unroll
      for (int q = 0; q < kMaxCh; ++q) {
        const int c = q * 32 + lane;
        if (c < a.C) {
          for (int e = 0; e < n; ++e) {
            const int64_t je = s_col[e];
            T m = K[c * kLd + e];
            if (!a.kernel_only) m *= a.f[je * a.C + c];
            if (a.w) m *= a.w[je];
            if (a.ew) m *= a.ew[base + e];
            acc[q] += m;
          }
        }
      }
      __syncwarp();
    }
    const T scale = (a.mean && it.row_len > 0) ? T(1) / T(it.row_len) : T(1);
    const bool split = it.row_len > pyengine::cuda::kChunk;
#pragma unroll
    for (int q = 0; q < kMaxCh; ++q) {
      const int c = q * 32 + lane;
      if (c < a.C) {
        if (split) {
          atomicAdd(&a.out[row * a.C + c], acc[q] * scale);
        } else {
          a.out[row * a.C + c] = acc[q] * scale;
        }
      }
    }
  }
}

// Tiles per warp in backward: z[0..L-1], pre[0..L-2], K, two gradient tiles.
template <typename T, typename index_t>
__host__ __device__ int64_t backward_tile_rows(const GnoParams<T, index_t>& a) {
  int64_t rows = 0;
  for (int l = 0; l < a.L; ++l) rows += a.dims[l];
  for (int l = 0; l + 1 < a.L; ++l) rows += a.dims[l + 1];
  return rows + a.C + 2 * a.widest;
}

// Shared memory: column indices (32 per warp) | params (P) | param grads (P) | per-warp tiles.
template <typename T, typename index_t>
__global__ void gno_backward_kernel(GnoParams<T, index_t> a) {
  unsigned char* smem_raw = pyengine::cuda::dynamic_smem<unsigned char>();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int64_t* s_col = reinterpret_cast<int64_t*>(smem_raw) + warp * 32;
  T* sp = reinterpret_cast<T*>(smem_raw + sizeof(int64_t) * 32 * warps);
  T* sg = sp + a.P;
  T* base = sg + a.P + int64_t(warp) * backward_tile_rows(a) * kLd;
  T* z[kMaxLayers];
  T* pre[kMaxLayers];
  for (int l = 0; l < a.L; ++l) {
    z[l] = base;
    base += a.dims[l] * kLd;
  }
  for (int l = 0; l + 1 < a.L; ++l) {
    pre[l] = base;
    base += a.dims[l + 1] * kLd;
  }
  T* K = base;
  base += a.C * kLd;
  T* gA = base;
  T* gB = base + a.widest * kLd;
  load_params(a.prm, sp, a.P);
  for (int i = threadIdx.x; i < a.P; i += blockDim.x) sg[i] = T(0);
  __syncthreads();

  for (int64_t item = int64_t(blockIdx.x) * warps + warp; item < a.num_items; item += int64_t(gridDim.x) * warps) {
    const pyengine::cuda::ItemRange it = pyengine::cuda::decode_item(a.rp, a.item_row, a.item_chunk, item);
    const int64_t row = it.row, rb = it.beg, re = it.end;
    const T scale = (a.mean && it.row_len > 0) ? T(1) / T(it.row_len) : T(1);
    const T* gr = a.g + row * a.C;
    for (int64_t eb = rb; eb < re; eb += 32) {
      const int n = re - eb < 32 ? int(re - eb) : 32;
      const bool valid = lane < n;
      const int64_t j = valid ? int64_t(a.col[eb + lane]) : 0;
      s_col[lane] = j;
      lane_mlp_forward<T, index_t>(a, sp, row, j, z, pre, K, lane);
      __syncwarp();
      // dK[c][e] (zero for e >= n, so padded edges add nothing below) and the f_y gradient.
      T* dp = gA;
      for (int c = lane; c < a.C; c += 32) {
        const T gc = gr[c] * scale;
        for (int e = 0; e < 32; ++e) {
          T dk = T(0);
          if (e < n) {
            const int64_t je = s_col[e];
            const T wj = (a.w ? a.w[je] : T(1)) * (a.ew ? a.ew[eb + e] : T(1));
            if (a.kernel_only) {
              dk = gc * wj;
            } else {
              const T fj = a.f[je * a.C + c];
              dk = gc * fj * wj;
              if (a.gf) atomicAdd(&a.gf[je * a.C + c], gc * K[c * kLd + e] * wj);
            }
          }
          dp[c * kLd + e] = dk;
        }
      }
      if ((a.gw || a.gew) && valid) {
        T dot = T(0);
        for (int c = 0; c < a.C; ++c) {
          const T m = K[c * kLd + lane] * (a.kernel_only ? T(1) : a.f[j * a.C + c]);
          dot = fma(gr[c], m, dot);
        }
        const T we = a.ew ? a.ew[eb + lane] : T(1);
        if (a.gw) atomicAdd(&a.gw[j], dot * scale * we);
        if (a.gew) a.gew[eb + lane] = dot * scale * (a.w ? a.w[j] : T(1));  // each edge once
      }
      __syncwarp();
      for (int l = a.L - 1; l >= 0; --l) {
        const int din = a.dims[l], dout = a.dims[l + 1];
        const T* zl = z[l];
        for (int idx = lane; idx < dout * din; idx += 32) {
          const int o = idx / din, k = idx - o * din;
          T s = T(0);
          for (int e = 0; e < 32; ++e) s = fma(dp[o * kLd + e], zl[k * kLd + e], s);
          atomicAdd(&sg[a.w_off[l] + idx], s);
        }
        for (int o = lane; o < dout; o += 32) {
          T s = T(0);
          for (int e = 0; e < 32; ++e) s += dp[o * kLd + e];
          atomicAdd(&sg[a.b_off[l] + o], s);
        }
        if (l == 0 && !a.want_input) break;
        // dz[k][lane] = sum_o W[o][k] dp[o][lane], times act'(pre[l-1]) below the first layer.
        T* dz = (dp == gA) ? gB : gA;
        const T* W = sp + a.w_off[l];
        for (int k = 0; k < din; ++k) {
          T s = T(0);
          for (int o = 0; o < dout; ++o) s = fma(W[o * din + k], dp[o * kLd + lane], s);
          dz[k * kLd + lane] = l > 0 ? s * act_d<T>(a.act, pre[l - 1][k * kLd + lane]) : s;
        }
        __syncwarp();
        dp = dz;
      }
      if (a.want_input) {
        // dp now holds d z[0] (n x dims[0]) for this lane's edge.
        for (int k = 0; k < a.d; ++k) {
          if (a.gx) {
            T v = valid ? dp[k * kLd + lane] : T(0);
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
            if (lane == 0) atomicAdd(&a.gx[row * a.d + k], v);  // pieces of a split row share it
          }
          if (a.gy && valid) atomicAdd(&a.gy[j * a.d + k], dp[(a.d + k) * kLd + lane]);
        }
        if (a.nonlinear && a.gf && valid) {
          for (int c = 0; c < a.Cf; ++c) atomicAdd(&a.gf[j * a.Cf + c], dp[(2 * a.d + c) * kLd + lane]);
        }
      }
      __syncwarp();
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < a.P; i += blockDim.x) atomicAdd(&a.gprm[i], sg[i]);
}

template <typename T, typename index_t>
GnoParams<T, index_t> make_params(const GnoArgs& a) {
  GnoParams<T, index_t> p{};
  set_input_pointers<T>(p, a);
  p.col = a.col.const_data_ptr<index_t>();
  p.item_row = nullptr;
  p.item_chunk = nullptr;
  p.num_items = a.num_rows;
  p.M = a.num_rows;
  p.d = int(a.coord_dim);
  p.C = int(a.channels);
  p.Cf = int(a.f_channels);
  p.L = a.num_layers;
  p.act = int(a.act);
  p.P = int(a.params.numel());
  p.mean = a.reduction == Reduction::Mean;
  p.kernel_only = !multiplies_f(a.transform);
  p.nonlinear = feeds_f(a.transform);
  p.widest = 0;
  for (int l = 0; l <= a.num_layers; ++l) {
    p.dims[l] = int(a.dims[l]);
    p.widest = std::max(p.widest, p.dims[l]);
  }
  for (int l = 0; l < a.num_layers; ++l) {
    p.w_off[l] = int(a.w_off[l]);
    p.b_off[l] = int(a.b_off[l]);
  }
  return p;
}

// Rows longer than pyengine::cuda::kChunk edges become several items (see the top of the file).
template <typename T, typename index_t>
pyengine::cuda::WorkItems attach_items(const GnoArgs& a, GnoParams<T, index_t>& p) {
  pyengine::cuda::WorkItems w = pyengine::cuda::make_work_items(a.row_ptr, a.num_edges);
  p.num_items = w.num_items;
  p.item_row = w.row_data();
  p.item_chunk = w.chunk_data();
  return w;  // keeps the item tensors alive until the launch is queued
}

template <typename T, typename index_t>
void launch_forward(const GnoArgs& a, at::Tensor& out) {
  auto p = make_params<T, index_t>(a);
  const pyengine::cuda::WorkItems items = attach_items(a, p);
  p.out = out.data_ptr<T>();
  const int64_t fixed = int64_t(p.P) * sizeof(T);
  const int64_t per_warp = 32 * sizeof(int64_t) + int64_t(2) * p.widest * kLd * sizeof(T);
  const int warps = pick_warps(fixed, per_warp, kMaxWarps, "forward");
  const int64_t smem = fixed + warps * per_warp;
  auto kernel = gno_forward_kernel<T, index_t>;
  pyengine::cuda::allow_dynamic_smem(kernel, smem);
  const int grid = persistent_grid(p.num_items, warps, smem);
  pyengine::cuda::launch(kernel, grid, warps * 32, smem, c10::cuda::getCurrentCUDAStream(), p);
}

template <typename T, typename index_t>
void launch_backward(const GnoArgs& a, const at::Tensor& g, GnoGradTensors& gr) {
  auto p = make_params<T, index_t>(a);
  const pyengine::cuda::WorkItems items = attach_items(a, p);
  set_grad_pointers<T>(p, g, gr);
  p.want_input = p.gx || p.gy || (p.nonlinear && p.gf);
  const int64_t fixed = int64_t(2) * p.P * sizeof(T);
  const int64_t per_warp = 32 * sizeof(int64_t) + backward_tile_rows(p) * kLd * int64_t(sizeof(T));
  const int warps = pick_warps(fixed, per_warp, kMaxWarps, "backward");
  const int64_t smem = fixed + warps * per_warp;
  auto kernel = gno_backward_kernel<T, index_t>;
  pyengine::cuda::allow_dynamic_smem(kernel, smem);
  const int grid = persistent_grid(p.num_items, warps, smem);
  pyengine::cuda::launch(kernel, grid, warps * 32, smem, c10::cuda::getCurrentCUDAStream(), p);
}

}  // namespace

void fma_forward(const GnoArgs& a, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(a.y.scalar_type(), "gno_integral_cuda", [&] {
    if (a.col_is_int32) {
      launch_forward<scalar_t, int32_t>(a, out);
    } else {
      launch_forward<scalar_t, int64_t>(a, out);
    }
  });
}

void fma_backward(const GnoArgs& a, const at::Tensor& grad_out, GnoGradTensors& g) {
  AT_DISPATCH_FLOATING_TYPES(a.y.scalar_type(), "gno_integral_backward_cuda", [&] {
    if (a.col_is_int32) {
      launch_backward<scalar_t, int32_t>(a, grad_out, g);
    } else {
      launch_backward<scalar_t, int64_t>(a, grad_out, g);
    }
  });
}

}  // namespace pyengine::gno::cuda
