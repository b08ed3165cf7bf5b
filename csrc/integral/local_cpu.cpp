// CPU instantiation of the local basis-integral ops (common/csr_engine_cpu.h:
// merge-path row blocks, long rows split and merged).
#include <torch/library.h>

#include "common/csr_engine_cpu.h"
#include "integral/local_impl.h"

namespace pyengine::local {

PYE_LOCAL_DEFINE(cpu, cpu::CsrEngine)

TORCH_LIBRARY_IMPL(pyengine, CPU, m) {
  m.impl("local_basis_aggregate", &local_basis_aggregate_cpu);
  m.impl("local_basis_aggregate_backward", &local_basis_aggregate_backward_cpu);
}

}  // namespace pyengine::local
