#pragma once
// Transparent huge pages for large, freshly allocated CPU outputs.
//
// A CPU tensor of tens of MB comes straight from mmap (glibc maps every block
// above its 32 MiB threshold on its own) and is page-faulted in 4 KiB at a time
// on first write: for a 64 MB int64 output that is 16k faults, which cost a
// kernel that only streams its input as much as a third of its time. Where
// THP is in "madvise" mode (the common default) we ask for huge pages on the
// block's 2 MiB-aligned interior before it is touched: 32 faults instead. Only
// blocks above 34 MiB are advised, so the range is always a private mapping
// that dies with the tensor (never a shared heap area). Advice only: nothing
// changes when THP is off or the call fails, and the values are unaffected.
#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pyengine {

inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  constexpr size_t kMinBytes = size_t(34) << 20;
  if (!t.defined() || !t.is_cpu() || t.nbytes() < kMinBytes) return;
  const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t lo = (p + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (p + t.nbytes()) & ~(kHuge - 1);
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace pyengine
