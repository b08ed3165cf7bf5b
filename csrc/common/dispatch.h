#pragma once
// One dispatch macro for the floating types every pyengine kernel supports.
// Reduced-precision inputs accumulate in float (at::opmath_type).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#define PYE_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)
