// Fused GNO integral on tensor cores: float32 data, TF32 products (WMMA
// m16n16k8), float32 accumulation. Chosen by gno_cuda.cu when TF32 is allowed.
//
// Edges are cut into warp tiles of 16 consecutive edges (the WMMA M dimension),
// which may span several rows; each edge's row is found by a galloping search
// from the previous tile's row. For a tile, a warp gathers z = [x_row, y_col
// (, f_col)] into a shared-memory tile [16][K], runs the MLP layer by layer as
// tile products with the CTA's copy of the weights (TF32-rounded, zero-padded
// to multiples of 16, rows skewed by 4 floats against bank conflicts), and
// keeps only pre-activations in shared memory: a layer applies the previous
// layer's activation when it loads its A fragments, so forward and backward
// store one tile per layer. Biases enter as the accumulators' initial values
// (a 16-row replicated bias tile). Nothing per edge reaches global memory.
//
// Forward: a warp owns a chunk of kChunkTiles tiles (256 edges) and reduces the
// messages K * f_col * w_col in registers with lanes over channels, writing a
// row when it ends: a plain store when the whole row lies in the chunk, an
// atomicAdd when the row crosses a chunk boundary (two partial sums added to
// zero, so the result is still deterministic unless a row spans 3+ chunks).
//
// Backward (flash-attention style: recompute, never store per edge): the CTA
// takes W * 16 edges at a time (W warps, one tile each). Every warp recomputes
// its tile's forward, turns the last layer's output into dK in place, and
// then, layer by layer from the top:
//   dW_l += dP_l^T Z_l   over the CTA's edges, each 16x16 tile of dW owned by
//                        one warp and accumulated in shared memory across
//                        all of the CTA's edges (one global atomicAdd per
//                        parameter per CTA at the very end);
//   dZ_l  = dP_l W_l     per warp on its own rows, multiplied in place by
//                        act'(P_{l-1}) (stored over P_{l-1}, which is then no
//                        longer needed), giving dP_{l-1};
// and finally scatters dZ_0 into the x, y (and, for "nonlinear", f) gradients.
// Column-indexed gradients (y, f, weights) use global atomics, as any scatter does.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <mma.h>

#include <algorithm>

#include "gno/gno_cuda.cuh"

namespace pyengine::gno::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTile = 16;          // edges per warp tile (WMMA M)
constexpr int kStep = 8;           // WMMA TF32 K
constexpr int kSkew = 4;           // floats added to every shared tile row
constexpr int kGroup = 4;          // output tiles accumulated together (one A fragment feeds four)
constexpr int kChunkTiles = 16;    // forward: warp tiles per work chunk
constexpr int kBwdChunkTiles = 4;  // backward: CTA tiles per work chunk
constexpr int kMaxFwdWarps = 16;
constexpr int kMaxBwdWarps = 8;

// TF32 tensor cores need sm_80+. Device code for older architectures keeps only
// trapping kernel stubs; gno_cuda.cu never picks these kernels on such devices.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define PYE_GNO_TC_DEVICE_CODE 1
constexpr int kMaxCh = int(kMaxChannels / 32);  // channels per lane
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragAt = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
#endif

// Everything the kernels need, by value. Shared memory starts with 32 int64 per
// warp (the tile's 16 columns and 16 rows), then the float area; *_off are
// offsets in floats into that area, each a multiple of 8 (32-byte aligned, as
// WMMA pointers must be).
struct TcParams {
  const float *x, *y, *f, *w, *ew, *prm, *g;
  const int64_t* rp;
  float* out;
  float *gy, *gx, *gf, *gw, *gew, *gprm;
  int64_t M, E, chunk_edges, num_chunks;
  int act, d, C, Cf, L;  // C: the MLP's output width; Cf: f_y's width
  bool mean, kernel_only, nonlinear, want_input;
  int din[kMaxLayers], dout[kMaxLayers];  // true layer widths
  int kin[kMaxLayers], nout[kMaxLayers];  // padded to multiples of 16
  int ldw[kMaxLayers];                    // kin + kSkew
  int prm_w[kMaxLayers], prm_b[kMaxLayers];
  int w_off[kMaxLayers];     // weights [nout][ldw], TF32-rounded, zero padding
  int bias_off[kMaxLayers];  // bias tiles [16][nout + kSkew], the bias in every row
  int dw_off[kMaxLayers];    // backward: dW accumulators [nout][ldw]
  int db_off[kMaxLayers];    // backward: bias-gradient accumulators [nout]
  int fwd_fixed, bwd_fixed;  // floats before the per-warp tiles
  int ld_act;                // forward ping-pong tiles
  int ld_z0, ld_g, ld_p[kMaxLayers];  // backward: inputs, last layer, hidden layers
};

#if defined(PYE_GNO_TC_DEVICE_CODE)
__device__ __forceinline__ float tf32(float v) { return wmma::__float_to_tf32(v); }

template <typename Frag>
__device__ __forceinline__ void round_tf32(Frag& a, int act, bool apply_act) {
  for (int i = 0; i < a.num_elements; ++i) a.x[i] = tf32(apply_act ? act_f<float>(act, a.x[i]) : a.x[i]);
}

__device__ __forceinline__ int64_t* warp_indices(int warp) {
  return pyengine::cuda::dynamic_smem<int64_t>() + warp * 2 * kTile;
}

__device__ __forceinline__ float* float_area(int warps) {
  return reinterpret_cast<float*>(pyengine::cuda::dynamic_smem<int64_t>() + warps * 2 * kTile);
}

// The CTA's copy of the MLP: TF32-rounded, zero-padded weights and replicated bias tiles.
__device__ void load_mlp(const TcParams& p, float* s) {
  for (int l = 0; l < p.L; ++l) {
    const int ldw = p.ldw[l], n = p.nout[l] * ldw;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const int o = i / ldw, k = i - o * ldw;
      s[p.w_off[l] + i] = (o < p.dout[l] && k < p.din[l]) ? tf32(p.prm[p.prm_w[l] + o * p.din[l] + k]) : 0.f;
    }
    const int ldb = p.nout[l] + kSkew;
    for (int i = threadIdx.x; i < kTile * ldb; i += blockDim.x) {
      const int o = i % ldb;
      s[p.bias_off[l] + i] = o < p.dout[l] ? p.prm[p.prm_b[l] + o] : 0.f;
    }
  }
}

// Columns and rows of the tile's edges base .. base + n - 1 (n <= 16; the rest
// marked row -1, column 0); `hint` is a row starting at or before `base`.
template <typename index_t>
__device__ void tile_edges(const TcParams& p, const index_t* __restrict__ col, int64_t base, int n, int64_t hint,
                           int64_t* s_col, int64_t* s_row, int lane) {
  if (lane < kTile) {
    const bool valid = lane < n;
    s_col[lane] = valid ? int64_t(col[base + lane]) : 0;
    s_row[lane] = valid ? row_of_edge(p.rp, p.M, base + lane, hint) : -1;
  }
}

// z[e][k] = [x_row, y_col (, f_col), 0...] for the tile's 16 edges (padding edges read row 0, column 0).
__device__ void gather_inputs(const TcParams& p, const int64_t* s_col, const int64_t* s_row, float* z, int ld,
                              int lane) {
  const int k0 = p.kin[0], d = p.d;
  for (int idx = lane; idx < kTile * k0; idx += 32) {
    const int e = idx / k0, k = idx - e * k0;
    const int64_t r = s_row[e] < 0 ? 0 : s_row[e], j = s_col[e];
    float v = 0.f;
    if (k < d) {
      v = p.x[r * d + k];
    } else if (k < 2 * d) {
      v = p.y[j * d + k - d];
    } else if (p.nonlinear && k < 2 * d + p.Cf) {
      v = p.f[j * p.Cf + k - 2 * d];
    }
    z[e * ld + k] = v;
  }
}

// out[16][nout_l] = bias_l + act?(in[16][kin_l]) W_l^T for one warp's tile.
__device__ void layer_forward(const TcParams& p, int l, const float* s, const float* in, int ld_in, float* out,
                              int ld_out) {
  const int nt = p.nout[l] / 16, ks = p.kin[l] / kStep, ldw = p.ldw[l], ldb = p.nout[l] + kSkew;
  const float* W = s + p.w_off[l];
  const float* bias = s + p.bias_off[l];
  const bool act_in = l > 0;
  for (int g0 = 0; g0 < nt; g0 += kGroup) {
    FragC acc[kGroup];
#pragma unroll
    for (int t = 0; t < kGroup; ++t) {
      if (g0 + t < nt) wmma::load_matrix_sync(acc[t], bias + (g0 + t) * 16, ldb, wmma::mem_row_major);
    }
    for (int k = 0; k < ks; ++k) {
      FragA a;
      wmma::load_matrix_sync(a, in + k * kStep, ld_in);
      round_tf32(a, p.act, act_in);
#pragma unroll
      for (int t = 0; t < kGroup; ++t) {
        if (g0 + t < nt) {
          FragBt b;  // B[k][o] = W[o][k]
          wmma::load_matrix_sync(b, W + (g0 + t) * 16 * ldw + k * kStep, ldw);
          wmma::mma_sync(acc[t], a, b, acc[t]);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kGroup; ++t) {
      if (g0 + t < nt) wmma::store_matrix_sync(out + (g0 + t) * 16, acc[t], ld_out, wmma::mem_row_major);
    }
  }
}

// ------------------------------------------------------------------------ forward

__device__ void flush_row(const TcParams& p, int64_t r, float (&acc)[kMaxCh], int64_t c0, int64_t c1, int lane) {
  const int64_t rb = p.rp[r], re = p.rp[r + 1];
  const float scale = p.mean ? 1.f / float(re - rb) : 1.f;
  const bool whole = rb >= c0 && re <= c1;
#pragma unroll
  for (int q = 0; q < kMaxCh; ++q) {
    const int c = q * 32 + lane;
    if (c < p.C) {
      if (whole) {
        p.out[r * p.C + c] = acc[q] * scale;
      } else {
        atomicAdd(&p.out[r * p.C + c], acc[q] * scale);
      }
    }
    acc[q] = 0.f;
  }
}

template <typename index_t>
__device__ void forward_body(const TcParams& p, const index_t* __restrict__ col) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  int64_t* s_col = warp_indices(warp);
  int64_t* s_row = s_col + kTile;
  float* s = float_area(warps);
  float* tile_a = s + p.fwd_fixed + warp * 2 * kTile * p.ld_act;
  float* tile_b = tile_a + kTile * p.ld_act;
  load_mlp(p, s);
  __syncthreads();

  for (int64_t chunk = int64_t(blockIdx.x) * warps + warp; chunk < p.num_chunks;
       chunk += int64_t(gridDim.x) * warps) {
    const int64_t c0 = chunk * p.chunk_edges;
    const int64_t c1 = c0 + p.chunk_edges < p.E ? c0 + p.chunk_edges : p.E;
    int64_t cur = row_of_edge(p.rp, p.M, c0, 0);  // the row being reduced
    float acc[kMaxCh];
#pragma unroll
    for (int q = 0; q < kMaxCh; ++q) acc[q] = 0.f;
    for (int64_t base = c0; base < c1; base += kTile) {
      const int n = c1 - base < kTile ? int(c1 - base) : kTile;
      tile_edges(p, col, base, n, cur, s_col, s_row, lane);
      __syncwarp();
      gather_inputs(p, s_col, s_row, tile_a, p.ld_act, lane);
      __syncwarp();
      float* in = tile_a;
      float* out = tile_b;
      for (int l = 0; l < p.L; ++l) {
        layer_forward(p, l, s, in, p.ld_act, out, p.ld_act);
        __syncwarp();
        float* t = in;
        in = out;
        out = t;
      }
      // `in` holds the kernel values K[e][c] of the tile.
      for (int e = 0; e < n; ++e) {
        const int64_t r = s_row[e];
        if (r != cur) {
          flush_row(p, cur, acc, c0, c1, lane);
          cur = r;
        }
        const int64_t j = s_col[e];
        const float wj = (p.w ? p.w[j] : 1.f) * (p.ew ? p.ew[base + e] : 1.f);
#pragma unroll
        for (int q = 0; q < kMaxCh; ++q) {
          const int c = q * 32 + lane;
          if (c < p.C) {
            float m = in[e * p.ld_act + c];
            if (!p.kernel_only) m *= p.f[j * p.C + c];
            acc[q] += m * wj;
          }
        }
      }
      __syncwarp();  // the next tile overwrites the indices and tiles
    }
    flush_row(p, cur, acc, c0, c1, lane);
  }
}

// ------------------------------------------------------------------------ backward

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Turns the tile's kernel values K (in G) into dK = dL/dK in place; scatters the
// message part of the f and weights gradients and writes the edge-weight gradients
// of the tile's edges base .. base + n - 1. Padding edges get dK = 0.
__device__ void output_grads(const TcParams& p, const int64_t* s_col, const int64_t* s_row, int64_t base, int n,
                             float* G, int ldg, int lane) {
  const int cpad = p.nout[p.L - 1];
  for (int e = 0; e < kTile; ++e) {
    if (e >= n) {  // uniform across the warp
      for (int c = lane; c < cpad; c += 32) G[e * ldg + c] = 0.f;
      continue;
    }
    const int64_t r = s_row[e], j = s_col[e];
    const float scale = p.mean ? 1.f / float(p.rp[r + 1] - p.rp[r]) : 1.f;
    const float wsrc = p.w ? p.w[j] : 1.f;
    const float we = p.ew ? p.ew[base + e] : 1.f;
    const float wj = wsrc * we;
    float dot = 0.f;
    for (int c = lane; c < cpad; c += 32) {
      float dk = 0.f;
      if (c < p.C) {
        const float gr = p.g[r * p.C + c] * scale;
        const float k = G[e * ldg + c];
        if (p.kernel_only) {
          dk = gr * wj;
          dot += gr * k;
        } else {
          const float fj = p.f[j * p.C + c];
          dk = gr * fj * wj;
          dot += gr * k * fj;
          if (p.gf) atomicAdd(&p.gf[j * p.C + c], gr * k * wj);
        }
      }
      G[e * ldg + c] = dk;
    }
    if (p.gw || p.gew) {
      dot = warp_sum(dot);
      if (lane == 0 && p.gw) atomicAdd(&p.gw[j], dot * we);
      if (lane == 0 && p.gew) p.gew[base + e] = dot * wsrc;  // each edge once
    }
  }
}

// dW_l += dP^T Z over the CTA's `rows` edges; Z = act(P_{l-1}) for l > 0. Each
// 16x16 tile of dW belongs to one warp (the same one for every CTA tile).
__device__ void weight_grads(const TcParams& p, int l, const float* dP, int ldd, const float* Z, int ldz, float* dW,
                             int rows, int warp, int warps) {
  const int to = p.nout[l] / 16, tk = p.kin[l] / 16, ldw = p.ldw[l];
  for (int t = warp; t < to * tk; t += warps) {
    const int ot = t / tk, kt = t - ot * tk;
    FragC acc;
    wmma::load_matrix_sync(acc, dW + ot * 16 * ldw + kt * 16, ldw, wmma::mem_row_major);
    for (int e0 = 0; e0 < rows; e0 += kStep) {
      FragAt a;  // A[o][e] = dP[e][o]
      wmma::load_matrix_sync(a, dP + e0 * ldd + ot * 16, ldd);
      round_tf32(a, p.act, false);
      FragB b;  // B[e][k] = Z[e][k]
      wmma::load_matrix_sync(b, Z + e0 * ldz + kt * 16, ldz);
      round_tf32(b, p.act, l > 0);
      wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(dW + ot * 16 * ldw + kt * 16, acc, ldw, wmma::mem_row_major);
  }
}

// db_l += column sums of dP over the CTA's rows; column o belongs to thread o % blockDim.
__device__ void bias_grads(const TcParams& p, int l, const float* dP, int ldd, float* db, int rows) {
  for (int o = threadIdx.x; o < p.dout[l]; o += blockDim.x) {
    float sum = 0.f;
    for (int e = 0; e < rows; ++e) sum += dP[e * ldd + o];
    db[o] += sum;
  }
}

// For one warp's rows: t = dP W_l ([16][kin_l]); for l > 0, t holds P_{l-1} on
// entry and leaves as dP_{l-1} = (dP W_l) * act'(P_{l-1}).
__device__ void backprop_rows(const TcParams& p, int l, const float* dP, int ldd, const float* s, float* t, int ldt) {
  const int nt = p.kin[l] / 16, ks = p.nout[l] / kStep, ldw = p.ldw[l];
  const float* W = s + p.w_off[l];
  for (int g0 = 0; g0 < nt; g0 += kGroup) {
    FragC acc[kGroup];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) wmma::fill_fragment(acc[u], 0.f);
    for (int k = 0; k < ks; ++k) {
      FragA a;  // A[e][o] = dP[e][o]
      wmma::load_matrix_sync(a, dP + k * kStep, ldd);
      round_tf32(a, p.act, false);
#pragma unroll
      for (int u = 0; u < kGroup; ++u) {
        if (g0 + u < nt) {
          FragB b;  // B[o][k] = W[o][k]
          wmma::load_matrix_sync(b, W + k * kStep * ldw + (g0 + u) * 16, ldw);
          wmma::mma_sync(acc[u], a, b, acc[u]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      if (g0 + u >= nt) continue;
      float* dst = t + (g0 + u) * 16;
      if (l > 0) {
        // Same fragment type and shape as acc, so element i of both is the same matrix entry.
        FragC pre;
        wmma::load_matrix_sync(pre, dst, ldt, wmma::mem_row_major);
        for (int i = 0; i < acc[u].num_elements; ++i) acc[u].x[i] *= act_d<float>(p.act, pre.x[i]);
      }
      wmma::store_matrix_sync(dst, acc[u], ldt, wmma::mem_row_major);
    }
  }
}

// Scatters dZ_0 (the tile's input gradients) into the x, y and (nonlinear) f gradients.
__device__ void point_grads(const TcParams& p, const int64_t* s_col, const int64_t* s_row, int n, const float* dz,
                            int ld, int lane) {
  const int d = p.d;
  if (p.gx) {
    // Rows are sorted within a tile: one atomic per (row run, coordinate).
    for (int k = lane; k < d; k += 32) {
      int64_t r = -1;
      float sum = 0.f;
      for (int e = 0; e < n; ++e) {
        if (s_row[e] != r) {
          if (r >= 0) atomicAdd(&p.gx[r * d + k], sum);
          r = s_row[e];
          sum = 0.f;
        }
        sum += dz[e * ld + k];
      }
      if (r >= 0) atomicAdd(&p.gx[r * d + k], sum);
    }
  }
  if (p.gy) {
    for (int idx = lane; idx < n * d; idx += 32) {
      const int e = idx / d, k = idx - e * d;
      atomicAdd(&p.gy[s_col[e] * d + k], dz[e * ld + d + k]);
    }
  }
  if (p.nonlinear && p.gf) {
    for (int e = 0; e < n; ++e) {
      for (int c = lane; c < p.Cf; c += 32) atomicAdd(&p.gf[s_col[e] * p.Cf + c], dz[e * ld + 2 * d + c]);
    }
  }
}

template <typename index_t>
__device__ void backward_body(const TcParams& p, const index_t* __restrict__ col) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int rows = warps * kTile;
  int64_t* s_col = warp_indices(warp);
  int64_t* s_row = s_col + kTile;
  float* s = float_area(warps);
  // CTA-wide buffers [rows][ld]: inputs Z0, hidden pre-activations P_l, last layer G.
  float* z0_all = s + p.bwd_fixed;
  float* p_all[kMaxLayers];
  float* next = z0_all + rows * p.ld_z0;
  for (int l = 0; l + 1 < p.L; ++l) {
    p_all[l] = next;
    next += rows * p.ld_p[l];
  }
  float* g_all = next;
  const int ld_g = p.ld_g;

  load_mlp(p, s);
  for (int l = 0; l < p.L; ++l) {
    for (int i = threadIdx.x; i < p.nout[l] * p.ldw[l]; i += blockDim.x) s[p.dw_off[l] + i] = 0.f;
    for (int i = threadIdx.x; i < p.nout[l]; i += blockDim.x) s[p.db_off[l] + i] = 0.f;
  }

  const int64_t chunk_edges = int64_t(kBwdChunkTiles) * rows;
  const int64_t num_chunks = (p.E + chunk_edges - 1) / chunk_edges;
  for (int64_t chunk = blockIdx.x; chunk < num_chunks; chunk += gridDim.x) {
    const int64_t c0 = chunk * chunk_edges;
    const int64_t c1 = c0 + chunk_edges < p.E ? c0 + chunk_edges : p.E;
    const int64_t hint = row_of_edge(p.rp, p.M, c0, 0);
    for (int64_t base = c0; base < c1; base += rows) {
      __syncthreads();  // every reader of the previous CTA tile is done
      const int64_t wbase = base + warp * kTile;
      const int n = wbase >= c1 ? 0 : (c1 - wbase < kTile ? int(c1 - wbase) : kTile);
      tile_edges(p, col, wbase, n, hint, s_col, s_row, lane);
      __syncwarp();
      float* z0 = z0_all + warp * kTile * p.ld_z0;
      gather_inputs(p, s_col, s_row, z0, p.ld_z0, lane);
      __syncwarp();
      // Recompute this warp's tile: pre-activations into P_l, the kernel values into G.
      for (int l = 0; l < p.L; ++l) {
        const float* in = l == 0 ? z0 : p_all[l - 1] + warp * kTile * p.ld_p[l - 1];
        const int ld_in = l == 0 ? p.ld_z0 : p.ld_p[l - 1];
        float* out = l + 1 < p.L ? p_all[l] + warp * kTile * p.ld_p[l] : g_all + warp * kTile * ld_g;
        layer_forward(p, l, s, in, ld_in, out, l + 1 < p.L ? p.ld_p[l] : ld_g);
        __syncwarp();
      }
      output_grads(p, s_col, s_row, wbase, n, g_all + warp * kTile * ld_g, ld_g, lane);
      __syncthreads();
      for (int l = p.L - 1; l >= 0; --l) {
        const float* dP = l == p.L - 1 ? g_all : p_all[l];
        const int ldd = l == p.L - 1 ? ld_g : p.ld_p[l];
        float* Z = l == 0 ? z0_all : p_all[l - 1];
        const int ldz = l == 0 ? p.ld_z0 : p.ld_p[l - 1];
        weight_grads(p, l, dP, ldd, Z, ldz, s + p.dw_off[l], rows, warp, warps);
        bias_grads(p, l, dP, ldd, s + p.db_off[l], rows);
        if (l == 0 && !p.want_input) break;
        __syncthreads();  // Z (P_{l-1} or the inputs) is overwritten below
        backprop_rows(p, l, dP + warp * kTile * ldd, ldd, s, Z + warp * kTile * ldz, ldz);
        __syncwarp();
        if (l == 0) {
          point_grads(p, s_col, s_row, n, z0, p.ld_z0, lane);
        } else {
          __syncthreads();  // dP_{l-1} of every warp before the next weight gradients
        }
      }
    }
  }
  __syncthreads();
  for (int l = 0; l < p.L; ++l) {
    const int din = p.din[l];
    for (int i = threadIdx.x; i < p.dout[l] * din; i += blockDim.x) {
      const int o = i / din, k = i - o * din;
      atomicAdd(&p.gprm[p.prm_w[l] + i], s[p.dw_off[l] + o * p.ldw[l] + k]);
    }
    for (int o = threadIdx.x; o < p.dout[l]; o += blockDim.x) atomicAdd(&p.gprm[p.prm_b[l] + o], s[p.db_off[l] + o]);
  }
}

#endif  // PYE_GNO_TC_DEVICE_CODE

template <typename index_t>
__global__ void __launch_bounds__(kMaxFwdWarps * 32) tc_forward_kernel(TcParams p, const index_t* __restrict__ col) {
#if defined(PYE_GNO_TC_DEVICE_CODE)
  forward_body(p, col);
#else
  __trap();
#endif
}

template <typename index_t>
__global__ void __launch_bounds__(kMaxBwdWarps * 32) tc_backward_kernel(TcParams p, const index_t* __restrict__ col) {
#if defined(PYE_GNO_TC_DEVICE_CODE)
  backward_body(p, col);
#else
  __trap();
#endif
}

// ------------------------------------------------------------------------ host side

int pad16(int64_t n) { return int((n + 15) / 16 * 16); }
int align8(int64_t n) { return int((n + 7) / 8 * 8); }

TcParams make_params(const GnoArgs& a) {
  TcParams p{};
  set_input_pointers<float>(p, a);
  p.M = a.num_rows;
  p.E = a.num_edges;
  p.act = int(a.act);
  p.d = int(a.coord_dim);
  p.C = int(a.channels);
  p.Cf = int(a.f_channels);
  p.L = a.num_layers;
  p.mean = a.reduction == Reduction::Mean;
  p.kernel_only = !multiplies_f(a.transform);
  p.nonlinear = feeds_f(a.transform);
  int widest = 0;
  for (int l = 0; l < p.L; ++l) {
    p.din[l] = int(a.dims[l]);
    p.dout[l] = int(a.dims[l + 1]);
    p.kin[l] = pad16(p.din[l]);
    p.nout[l] = pad16(p.dout[l]);
    p.ldw[l] = p.kin[l] + kSkew;
    p.prm_w[l] = int(a.w_off[l]);
    p.prm_b[l] = int(a.b_off[l]);
    widest = std::max({widest, p.kin[l], p.nout[l]});
  }
  int off = 0;
  for (int l = 0; l < p.L; ++l) {
    p.w_off[l] = off;
    off += align8(int64_t(p.nout[l]) * p.ldw[l]);
    p.bias_off[l] = off;
    off += align8(int64_t(kTile) * (p.nout[l] + kSkew));
  }
  p.fwd_fixed = off;
  for (int l = 0; l < p.L; ++l) {
    p.dw_off[l] = off;
    off += align8(int64_t(p.nout[l]) * p.ldw[l]);
    p.db_off[l] = off;
    off += align8(p.nout[l]);
  }
  p.bwd_fixed = off;
  p.ld_act = widest + kSkew;
  p.ld_z0 = p.kin[0] + kSkew;
  for (int l = 0; l + 1 < p.L; ++l) p.ld_p[l] = p.nout[l] + kSkew;
  p.ld_g = p.nout[p.L - 1] + kSkew;
  return p;
}

constexpr int64_t kIndexBytesPerWarp = 2 * kTile * sizeof(int64_t);

template <typename index_t>
void launch_forward(const GnoArgs& a, at::Tensor& out) {
  TcParams p = make_params(a);
  p.out = out.data_ptr<float>();
  p.chunk_edges = int64_t(kChunkTiles) * kTile;
  p.num_chunks = (p.E + p.chunk_edges - 1) / p.chunk_edges;
  const int64_t fixed = int64_t(p.fwd_fixed) * sizeof(float);
  const int64_t per_warp = kIndexBytesPerWarp + int64_t(2) * kTile * p.ld_act * sizeof(float);
  const int warps = pick_warps(fixed, per_warp, kMaxFwdWarps, "forward (tensor cores)");
  const int64_t smem = fixed + warps * per_warp;
  auto kernel = tc_forward_kernel<index_t>;
  pyengine::cuda::allow_dynamic_smem(kernel, smem);
  const int grid = persistent_grid(p.num_chunks, warps, smem);
  pyengine::cuda::launch(kernel, grid, warps * 32, smem, c10::cuda::getCurrentCUDAStream(), p,
               a.col.const_data_ptr<index_t>());
}

template <typename index_t>
void launch_backward(const GnoArgs& a, const at::Tensor& g, GnoGradTensors& gr) {
  TcParams p = make_params(a);
  set_grad_pointers<float>(p, g, gr);
  p.want_input = p.gx || p.gy || (p.nonlinear && p.gf);
  int64_t rows_ld = p.ld_z0 + p.ld_g;
  for (int l = 0; l + 1 < p.L; ++l) rows_ld += p.ld_p[l];
  const int64_t fixed = int64_t(p.bwd_fixed) * sizeof(float);
  const int64_t per_warp = kIndexBytesPerWarp + int64_t(kTile) * rows_ld * sizeof(float);
  const int warps = pick_warps(fixed, per_warp, kMaxBwdWarps, "backward (tensor cores)");
  const int64_t smem = fixed + warps * per_warp;
  auto kernel = tc_backward_kernel<index_t>;
  pyengine::cuda::allow_dynamic_smem(kernel, smem);
  const int64_t cta_edges = int64_t(kBwdChunkTiles) * warps * kTile;
  const int grid = persistent_grid((p.E + cta_edges - 1) / cta_edges, 1, smem);
  pyengine::cuda::launch(kernel, grid, warps * 32, smem, c10::cuda::getCurrentCUDAStream(), p,
               a.col.const_data_ptr<index_t>());
}

}  // namespace

void tc_forward(const GnoArgs& a, at::Tensor& out) {
  if (a.col_is_int32) {
    launch_forward<int32_t>(a, out);
  } else {
    launch_forward<int64_t>(a, out);
  }
}

void tc_backward(const GnoArgs& a, const at::Tensor& grad_out, GnoGradTensors& g) {
  if (a.col_is_int32) {
    launch_backward<int32_t>(a, grad_out, g);
  } else {
    launch_backward<int64_t>(a, grad_out, g);
  }
}

}  // namespace pyengine::gno::cuda
