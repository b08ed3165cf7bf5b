#pragma once
// Emulator stand-in for <mma.h> (WMMA).
#include "pye_simt/wmma.h"
