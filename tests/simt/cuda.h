#pragma once
// Emulator stand-in for the CUDA runtime header.
#include "pye_simt/runtime.h"
