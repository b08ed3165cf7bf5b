// Self-test kernels of the SIMT emulator (built only for it, by tests/cuda_emulation.py):
// each case either returns what its threads computed or is expected to raise, so
// tests/test_simt_emulator.py can check that the emulator computes what a GPU
// computes *and* that it exposes the bugs it claims to expose.
// Registered as torch.ops.pyengine_emu.simt_selftest(name, a, b).
#include <ATen/ATen.h>
#include <mma.h>
#include <torch/library.h>

#include <string>

#include "common/cuda_launch.cuh"

namespace {

namespace wmma = nvcuda::wmma;

__global__ void shuffles_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  int sum = lane;
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  out[lane * 5 + 0] = sum;
  out[lane * 5 + 1] = __shfl_sync(0xffffffffu, lane * 10, 5);
  out[lane * 5 + 2] = __shfl_down_sync(0xffffffffu, lane, 3);
  out[lane * 5 + 3] = __shfl_up_sync(0xffffffffu, lane, 2);
  out[lane * 5 + 4] = int(__ballot_sync(0xffffffffu, lane % 3 == 0));
}

// Every lane writes its slot, then reads its neighbour's: correct only with the barrier.
template <bool kSync>
__global__ void neighbour_read_kernel(int* out) {
  int* s = pyengine::cuda::dynamic_smem<int>();
  const int lane = threadIdx.x & 31;
  s[lane] = lane;
  if (kSync) __syncwarp();
  out[lane] = s[(lane + 1) % 32];
}

__global__ void exited_lane_kernel() {
  if ((threadIdx.x & 31) >= 16) return;
  __syncwarp();  // names lanes 16..31, which have exited
}

__global__ void deadlock_kernel() {
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    __syncwarp();  // waits for lane 0, which waits at __syncthreads for these lanes
  }
}

__global__ void overrun_kernel(int bytes) {
  unsigned char* s = pyengine::cuda::dynamic_smem<unsigned char>();
  if (threadIdx.x == 0) s[bytes] = 1;
}

__global__ void atomics_kernel(float* acc) { atomicAdd(acc, 1.0f); }

__global__ void noop_kernel() {}

// D = A B + C for one 16x16x8 TF32 tile, through shared memory as real kernels do.
__global__ void wmma_kernel(const float* a, const float* b, const float* c, float* d) {
  float* s = pyengine::cuda::dynamic_smem<float>();
  for (int i = threadIdx.x; i < 16 * 8; i += 32) s[i] = a[i], s[128 + i] = b[i];
  for (int i = threadIdx.x; i < 256; i += 32) s[256 + i] = c[i];
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::load_matrix_sync(fa, s, 8);
  wmma::load_matrix_sync(fb, s + 128, 16);
  wmma::load_matrix_sync(fc, s + 256, 16, wmma::mem_row_major);
  for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
  for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(s + 512, fc, 16, wmma::mem_row_major);
  __syncwarp();
  for (int i = threadIdx.x; i < 256; i += 32) d[i] = s[512 + i];
}

// Reads a stored tile back without the barrier: lanes see other lanes' shares missing.
__global__ void wmma_unsynced_kernel(float* d) {
  float* s = pyengine::cuda::dynamic_smem<float>();
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::fill_fragment(fc, 2.0f);
  wmma::store_matrix_sync(s, fc, 16, wmma::mem_row_major);
  for (int i = threadIdx.x; i < 256; i += 32) d[i] = s[(i + 1) % 256];
}

__global__ void wmma_misaligned_kernel() {
  float* s = pyengine::cuda::dynamic_smem<float>();
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
  wmma::load_matrix_sync(fc, s + 1, 16, wmma::mem_row_major);
}

at::Tensor selftest(c10::string_view name_view, const at::Tensor& a, const at::Tensor& b) {
  const std::string name(name_view);
  using pyengine::cuda::launch;
  const auto ints = at::TensorOptions().dtype(at::kInt);
  const auto floats = at::TensorOptions().dtype(at::kFloat);
  if (name == "shuffles") {
    auto out = at::zeros({32, 5}, ints);
    launch(shuffles_kernel, 1, 32, 0, nullptr, out.data_ptr<int>());
    return out;
  }
  if (name == "neighbour_read_synced" || name == "neighbour_read_unsynced") {
    auto out = at::zeros({32}, ints);
    auto kernel = name == "neighbour_read_synced" ? neighbour_read_kernel<true> : neighbour_read_kernel<false>;
    launch(kernel, 1, 32, 32 * sizeof(int), nullptr, out.data_ptr<int>());
    return out;
  }
  if (name == "exited_lane") launch(exited_lane_kernel, 1, 32, 0, nullptr);
  if (name == "deadlock") launch(deadlock_kernel, 1, 32, 0, nullptr);
  if (name == "overrun") launch(overrun_kernel, 1, 32, 64, nullptr, 64);
  if (name == "empty_grid") launch(noop_kernel, 0, 32, 0, nullptr);
  if (name == "big_smem_without_optin") launch(noop_kernel, 1, 32, 64 * 1024, nullptr);
  if (name == "big_smem_with_optin") {
    pyengine::cuda::allow_dynamic_smem(noop_kernel, 64 * 1024);
    launch(noop_kernel, 1, 32, 64 * 1024, nullptr);
  }
  if (name == "atomics") {
    auto acc = at::zeros({1}, floats);
    launch(atomics_kernel, 3, 64, 0, nullptr, acc.data_ptr<float>());
    return acc;
  }
  if (name == "wmma") {  // a: A (16x8) row-major, b: [B (8x16), C (16x16)] flattened
    auto d = at::empty({16, 16}, floats);
    const auto bc = b.contiguous();
    launch(wmma_kernel, 1, 32, 768 * sizeof(float), nullptr, a.contiguous().data_ptr<float>(), bc.data_ptr<float>(),
           bc.data_ptr<float>() + 128, d.data_ptr<float>());
    return d;
  }
  if (name == "wmma_unsynced") {
    auto d = at::empty({256}, floats);
    launch(wmma_unsynced_kernel, 1, 32, 256 * sizeof(float), nullptr, d.data_ptr<float>());
    return d;
  }
  if (name == "wmma_misaligned") launch(wmma_misaligned_kernel, 1, 32, 1024, nullptr);
  return at::zeros({0}, floats);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(pyengine, m) { m.def("simt_selftest(str name, Tensor a, Tensor b) -> Tensor", &selftest); }
