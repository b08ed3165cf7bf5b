#pragma once
// pye_simt: the CUDA execution model on the CPU, for testing kernels without a GPU.
//
// Every CUDA thread of a block is a fiber (ucontext) on the calling OS thread;
// blocks run one after another. A fiber runs until it reaches a barrier
// (__syncthreads, __syncwarp, a shuffle or vote, which are warp barriers), then
// the next fiber runs, round-robin in lane order (PYE_SIMT_ORDER=reverse flips it).
// Consequences that make the emulator a useful checker, not only a runner:
//   * a thread reading what another thread wrote, without a barrier between,
//     sees the old value (the writer has not run yet), so a missing
//     __syncwarp / __syncthreads changes the result;
//   * barrier misuse (a __syncwarp mask naming an exited lane, threads stuck at
//     different barriers) is reported as an error instead of hanging;
//   * dynamic shared memory starts filled with 0xFF bytes (NaN / -1) and is
//     guarded by a canary, so reads of unwritten or out-of-range shared memory show;
//   * launch limits are those of an H100 (1024 threads, 227 KiB of opt-in
//     dynamic shared memory, 48 KiB without the opt-in, no empty grids).
// Errors surface as std::runtime_error from the launch. Atomics are plain
// read-modify-writes (one OS thread). Global memory is ordinary host memory.
// Not modelled: memory-model subtleties beyond barriers, register limits,
// timing, and anything about performance.
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------
// CUDA vocabulary types and runtime API (the subset pyengine uses).
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

typedef struct pye_simt_stream* cudaStream_t;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

namespace pye_simt {

constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kOptinSmem = 232448;  // H100: 227 KiB per block
constexpr size_t kSmemPerSm = 233472;  // H100: 228 KiB per SM
constexpr size_t kCanary = 256;
constexpr size_t kSmemAlign = 128;  // what cuda_launch.cuh's declaration guarantees on the GPU
constexpr size_t kStackBytes = 256 * 1024;

struct Lane {
  ucontext_t ctx;
  uint3 tid;
  int linear = 0;
  enum State { Runnable, AtBlockBarrier, AtWarpBarrier, Done } state = Runnable;
  unsigned wait_mask = 0;
};

struct Warp {
  unsigned arrived = 0;  // lanes waiting at a warp barrier
  unsigned exited = 0;
  unsigned present = 0;  // lanes that exist (the last warp of a block may be partial)
  alignas(16) unsigned char slot[32][16];  // shuffle / vote exchange
};

struct Engine {
  ucontext_t scheduler;
  std::vector<Lane> lanes;
  std::vector<Warp> warps;
  std::vector<char*> stacks;
  int current = -1;
  int at_block_barrier = 0, live = 0;
  uint3 block_idx{0, 0, 0};
  dim3 grid_dim, block_dim;
  std::vector<unsigned char> smem;  // kSmemAlign slack, the block's bytes, the canary
  size_t smem_bytes = 0;
  unsigned char* smem_base() {
    const auto p = reinterpret_cast<uintptr_t>(smem.data());
    return smem.data() + (kSmemAlign - p % kSmemAlign) % kSmemAlign;
  }
  std::string error;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  std::map<const void*, int> max_dynamic_smem;  // cudaFuncSetAttribute opt-ins
  bool in_kernel = false;
};

inline Engine& engine() {
  static Engine e;
  return e;
}

inline Lane& self() {
  Engine& e = engine();
  return e.lanes[size_t(e.current)];
}

// Read at every launch, so a test can switch it (os.environ) between calls.
inline bool order_reversed() {
  const char* s = std::getenv("PYE_SIMT_ORDER");
  return s && std::string(s) == "reverse";
}

// Ends the current fiber with an error: the launch stops and throws it.
[[noreturn]] inline void fail(const std::string& what) {
  Engine& e = engine();
  if (e.error.empty()) {
    const Lane& l = self();
    e.error = what + " (block " + std::to_string(e.block_idx.x) + "," + std::to_string(e.block_idx.y) + ", thread " +
              std::to_string(l.linear) + ")";
  }
  self().state = Lane::Done;
  swapcontext(&self().ctx, &e.scheduler);
  std::abort();  // never resumed
}

inline void yield() {
  Engine& e = engine();
  swapcontext(&self().ctx, &e.scheduler);
}

inline void release_block_barrier() {
  Engine& e = engine();
  for (auto& l : e.lanes)
    if (l.state == Lane::AtBlockBarrier) l.state = Lane::Runnable;
  e.at_block_barrier = 0;
}

// Releases the lanes of warp w waiting with `mask` once every lane of the mask arrived.
inline void try_release_warp(int w, unsigned mask) {
  Engine& e = engine();
  Warp& W = e.warps[size_t(w)];
  if ((W.arrived & mask) != mask) return;
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1u)) continue;
    Lane& lane = e.lanes[size_t(w * 32 + l)];
    if (lane.state == Lane::AtWarpBarrier && lane.wait_mask == mask) lane.state = Lane::Runnable;
  }
  W.arrived &= ~mask;
}

inline void syncthreads() {
  Engine& e = engine();
  self().state = Lane::AtBlockBarrier;
  if (++e.at_block_barrier == e.live) release_block_barrier();
  yield();
}

inline void syncwarp(unsigned mask = 0xffffffffu) {
  Engine& e = engine();
  Lane& me = self();
  const int w = me.linear / 32, l = me.linear % 32;
  Warp& W = e.warps[size_t(w)];
  if (!((mask >> l) & 1u)) fail("__syncwarp / shuffle: the calling lane is not in the mask");
  if (mask & ~W.present) fail("__syncwarp / shuffle: the mask names lanes that do not exist in this block");
  if (mask & W.exited) fail("__syncwarp / shuffle: the mask names a lane that has already exited");
  me.state = Lane::AtWarpBarrier;
  me.wait_mask = mask;
  W.arrived |= 1u << l;
  try_release_warp(w, mask);
  yield();
}

inline void lane_exit() {
  Engine& e = engine();
  Lane& me = self();
  const int w = me.linear / 32, l = me.linear % 32;
  Warp& W = e.warps[size_t(w)];
  me.state = Lane::Done;
  W.exited |= 1u << l;
  --e.live;
  for (int k = 0; k < 32; ++k) {
    const size_t idx = size_t(w * 32 + k);
    if (idx >= e.lanes.size()) break;
    const Lane& o = e.lanes[idx];
    if (o.state == Lane::AtWarpBarrier && ((o.wait_mask >> l) & 1u) && e.error.empty()) {
      e.error = "lane " + std::to_string(l) + " of warp " + std::to_string(w) +
                " exited while other lanes wait for it at __syncwarp / a shuffle (block " +
                std::to_string(e.block_idx.x) + ")";
    }
  }
  if (e.at_block_barrier > 0 && e.at_block_barrier == e.live) release_block_barrier();
}

inline void fiber_entry() {
  Engine& e = engine();
  e.body(e.body_arg);
  lane_exit();
  swapcontext(&self().ctx, &e.scheduler);
  std::abort();
}

inline char* stack_for(size_t i) {
  Engine& e = engine();
  while (e.stacks.size() <= i) {
    // A guard page below each stack turns an overflow into a crash, not silent corruption.
    void* p = mmap(nullptr, kStackBytes + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("pye_simt: cannot map a fiber stack");
    mprotect(p, 4096, PROT_NONE);
    e.stacks.push_back(static_cast<char*>(p) + 4096);
  }
  return e.stacks[i];
}

inline std::string describe_deadlock() {
  Engine& e = engine();
  std::string s = "pye_simt: deadlock in block " + std::to_string(e.block_idx.x) + ": ";
  int shown = 0;
  for (const auto& l : e.lanes) {
    if (l.state == Lane::Done || shown >= 8) continue;
    s += "thread " + std::to_string(l.linear) +
         (l.state == Lane::AtBlockBarrier ? " at __syncthreads; " : " at __syncwarp/shuffle; ");
    ++shown;
  }
  return s;
}

inline void run_block(unsigned bx, unsigned by, unsigned bz) {
  Engine& e = engine();
  const int n = int(e.block_dim.x * e.block_dim.y * e.block_dim.z);
  e.block_idx = {bx, by, bz};
  e.lanes.assign(size_t(n), Lane{});
  e.warps.assign(size_t((n + 31) / 32), Warp{});
  for (int i = 0; i < n; ++i) e.warps[size_t(i / 32)].present |= 1u << (i % 32);
  std::fill(e.smem.begin(), e.smem.end(), static_cast<unsigned char>(0xFF));
  for (int i = 0; i < n; ++i) {
    Lane& l = e.lanes[size_t(i)];
    l.linear = i;
    l.tid = {unsigned(i) % e.block_dim.x, (unsigned(i) / e.block_dim.x) % e.block_dim.y,
             unsigned(i) / (e.block_dim.x * e.block_dim.y)};
    getcontext(&l.ctx);
    l.ctx.uc_stack.ss_sp = stack_for(size_t(i));
    l.ctx.uc_stack.ss_size = kStackBytes;
    l.ctx.uc_link = nullptr;
    makecontext(&l.ctx, fiber_entry, 0);
  }
  e.live = n;
  e.at_block_barrier = 0;
  const bool rev = order_reversed();
  for (;;) {
    bool ran = false, all_done = true;
    for (int k = 0; k < n; ++k) {
      const int i = rev ? n - 1 - k : k;
      if (e.lanes[size_t(i)].state == Lane::Done) continue;
      all_done = false;
      if (e.lanes[size_t(i)].state != Lane::Runnable) continue;
      e.current = i;
      swapcontext(&e.scheduler, &e.lanes[size_t(i)].ctx);
      e.current = -1;
      ran = true;
      if (!e.error.empty()) return;
    }
    if (all_done) break;
    if (!ran) {
      e.error = describe_deadlock();
      return;
    }
  }
  const unsigned char* canary = e.smem_base() + e.smem_bytes;
  for (size_t i = 0; i < kCanary; ++i) {
    if (canary[i] != 0xFF) {
      e.error = "pye_simt: write past the end of dynamic shared memory (" + std::to_string(e.smem_bytes) +
                " bytes) in block " + std::to_string(bx);
      return;
    }
  }
}

template <typename T>
inline T* dynamic_smem() {
  return reinterpret_cast<T*>(engine().smem_base());
}

inline std::string launch_problem(const void* kernel, dim3 grid, dim3 block, size_t smem) {
  Engine& e = engine();
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return "invalid configuration argument (an empty grid)";
  if (grid.y > 65535 || grid.z > 65535) return "invalid configuration argument (grid.y or grid.z > 65535)";
  if (threads == 0 || threads > 1024) return "invalid configuration argument (block of " + std::to_string(threads) +
                                             " threads)";
  if (smem > kDefaultSmem) {
    auto it = e.max_dynamic_smem.find(kernel);
    if (it == e.max_dynamic_smem.end() || size_t(it->second) < smem)
      return "too much dynamic shared memory (" + std::to_string(smem) +
             " bytes) without cudaFuncAttributeMaxDynamicSharedMemorySize";
  }
  if (smem > kOptinSmem) return "too much dynamic shared memory (" + std::to_string(smem) + " bytes)";
  return "";
}

// The emulated kernel<<<grid, block, smem, stream>>>(args...): every block in
// turn; kernel parameters are copied per thread, as CUDA passes them by value.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t, Args&&... args) {
  Engine& e = engine();
  if (e.in_kernel) throw std::runtime_error("pye_simt: nested kernel launch");
  const std::string problem = launch_problem(reinterpret_cast<const void*>(kernel), grid, block, smem);
  if (!problem.empty()) throw std::runtime_error("CUDA error (pye_simt): " + problem);
  using Tuple = std::tuple<std::decay_t<Params>...>;
  struct Call {
    void (*kernel)(Params...);
    const Tuple* params;
    static void run(void* self) {
      auto* c = static_cast<Call*>(self);
      Tuple copy = *c->params;
      std::apply(c->kernel, copy);
    }
  };
  const Tuple params(std::forward<Args>(args)...);
  Call call{kernel, &params};
  e.body = &Call::run;
  e.body_arg = &call;
  e.grid_dim = grid;
  e.block_dim = block;
  e.smem_bytes = smem;
  e.smem.assign(kSmemAlign + smem + kCanary, 0xFF);
  e.error.clear();
  e.in_kernel = true;
  for (unsigned bz = 0; bz < grid.z && e.error.empty(); ++bz)
    for (unsigned by = 0; by < grid.y && e.error.empty(); ++by)
      for (unsigned bx = 0; bx < grid.x && e.error.empty(); ++bx) run_block(bx, by, bz);
  e.in_kernel = false;
  if (!e.error.empty()) {
    const std::string msg = "pye_simt: " + e.error;
    e.error.clear();
    throw std::runtime_error(msg);
  }
}

// ---- shuffles and votes: a value per lane goes through the warp's exchange slots.
template <typename T, typename SrcLane>
inline T exchange(unsigned mask, const T& v, SrcLane src_of) {
  static_assert(sizeof(T) <= 16, "pye_simt: shuffled values are at most 16 bytes");
  Engine& e = engine();
  const int w = self().linear / 32, l = self().linear % 32;
  Warp& W = e.warps[size_t(w)];
  std::memcpy(W.slot[l], &v, sizeof(T));
  syncwarp(mask);
  const int src = src_of(l);
  T r = v;
  if (src >= 0 && src < 32 && ((mask >> src) & 1u)) std::memcpy(&r, e.warps[size_t(w)].slot[src], sizeof(T));
  syncwarp(mask);  // nobody overwrites a slot before every lane has read it
  return r;
}

inline int lane_id() { return self().linear % 32; }

}  // namespace pye_simt

// ---------------------------------------------------------------------------
// Device intrinsics.
inline void __syncthreads() { pye_simt::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { pye_simt::syncwarp(mask); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return pye_simt::exchange(mask, v, [&](int l) {
    const int src = l ^ lane_mask;
    return (src / width == l / width) ? src : l;
  });
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return pye_simt::exchange(mask, v, [&](int l) { return (l & ~(width - 1)) + (src_lane & (width - 1)); });
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return pye_simt::exchange(mask, v, [&](int l) { return (l % width) + int(delta) < width ? l + int(delta) : l; });
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return pye_simt::exchange(mask, v, [&](int l) { return (l % width) - int(delta) >= 0 ? l - int(delta) : l; });
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  unsigned bits = 0;
  for (int k = 0; k < 32; ++k) {
    // every lane of the mask reads lane k's predicate through its own exchange round
    const int v = pye_simt::exchange(mask, pred ? 1 : 0, [&](int) { return k; });
    if (((mask >> k) & 1u) && v) bits |= 1u << k;
  }
  return bits;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

// The overloads CUDA has (so the same argument conversions apply).
#define PYE_SIMT_ATOMIC_ADD(T)             \
  inline T atomicAdd(T* address, T val) { \
    const T old = *address;               \
    *address = old + val;                 \
    return old;                           \
  }
PYE_SIMT_ATOMIC_ADD(float)
PYE_SIMT_ATOMIC_ADD(double)
PYE_SIMT_ATOMIC_ADD(int)
PYE_SIMT_ATOMIC_ADD(unsigned)
PYE_SIMT_ATOMIC_ADD(unsigned long long)
#undef PYE_SIMT_ATOMIC_ADD
inline float2 atomicAdd(float2* address, float2 val) {
  const float2 old = *address;
  address->x += val.x;
  address->y += val.y;
  return old;
}
inline float4 atomicAdd(float4* address, float4 val) {
  const float4 old = *address;
  address->x += val.x;
  address->y += val.y;
  address->z += val.z;
  address->w += val.w;
  return old;
}
template <typename T>
inline T atomicMax(T* address, T val) {
  const T old = *address;
  if (val > old) *address = val;
  return old;
}
template <typename T>
inline T atomicMin(T* address, T val) {
  const T old = *address;
  if (val < old) *address = val;
  return old;
}
template <typename T>
inline T atomicExch(T* address, T val) {
  const T old = *address;
  *address = val;
  return old;
}
template <typename T>
inline T atomicCAS(T* address, T compare, T val) {
  const T old = *address;
  if (old == compare) *address = val;
  return old;
}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
namespace pye_simt {
template <typename To, typename From>
inline To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of one size");
  To r;
  std::memcpy(&r, &v, sizeof(To));
  return r;
}
}  // namespace pye_simt
inline float __int_as_float(int v) { return pye_simt::bit_cast<float>(v); }
inline int __float_as_int(float f) { return pye_simt::bit_cast<int>(f); }
inline unsigned __float_as_uint(float f) { return pye_simt::bit_cast<unsigned>(f); }
inline float __uint_as_float(unsigned v) { return pye_simt::bit_cast<float>(v); }

// Host-side runtime API.
inline cudaError_t cudaGetDevice(int* dev) {
  *dev = 0;
  return cudaSuccess;
}
inline int pye_simt_sm_count() {
  // Few SMs keep emulated persistent grids small and make their grid-stride loops
  // take several items per warp; PYE_SIMT_SMS overrides it.
  const char* s = std::getenv("PYE_SIMT_SMS");
  return s ? std::max(1, std::atoi(s)) : 3;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = pye_simt_sm_count(); break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = int(pye_simt::kSmemPerSm); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(pye_simt::kOptinSmem); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  if (value < 0 || size_t(value) > pye_simt::kOptinSmem) return cudaErrorInvalidValue;
  pye_simt::engine().max_dynamic_smem[reinterpret_cast<const void*>(func)] = value;
  return cudaSuccess;
}
// Launch errors are thrown by launch() itself, so nothing is ever pending here.
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "unspecified launch failure";
  }
}

// Thread geometry, read from the running fiber.
#define threadIdx (::pye_simt::self().tid)
#define blockIdx (::pye_simt::engine().block_idx)
#define blockDim (::pye_simt::engine().block_dim)
#define gridDim (::pye_simt::engine().grid_dim)
#define warpSize 32
