#pragma once
// The SIMT emulator's stand-in (tests/simt/c10/cuda), for the Thrust host back end, whose include
// path leaves tests/simt out so that Thrust does not take its <cuda_runtime_api.h> for a CUDA toolkit.
#include "../../../c10/cuda/CUDAStream.h"
