// CUDA instantiation of the local basis-integral ops (common/csr_engine_cuda.cuh:
// warp per row or row piece, split rows merged by a second kernel).
#include <torch/library.h>

#include "common/csr_engine_cuda.cuh"
#include "local/local_impl.h"

namespace pyengine::local {

PYE_LOCAL_DEFINE(cuda, cuda::CsrEngine)

TORCH_LIBRARY_IMPL(pyengine, CUDA, m) {
  m.impl("local_basis_aggregate", &local_basis_aggregate_cuda);
  m.impl("local_basis_aggregate_backward", &local_basis_aggregate_backward_cuda);
}

}  // namespace pyengine::local
