#pragma once
// Associative reductions shared by the CPU and CUDA CSR engines.
//
// Each Op has a small State, `init()`, `push(state, x, edge)` to fold one value
// in, and `merge(state, other)` to combine two partial states. Merges are
// order-independent up to floating-point rounding (ties in max/min pick the
// lower edge index), so a row may be split across threads or warps and still
// give the same answer as a sequential scan.
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/macros.h"

namespace pyengine {

PYE_HD float fast_exp(float x) { return ::expf(x); }
PYE_HD double fast_exp(double x) { return ::exp(x); }

template <typename acc_t>
struct SumOp {
  struct State {
    acc_t v;
  };
  static PYE_HD State init() { return State{acc_t(0)}; }
  static PYE_HD void push(State& s, acc_t x, int64_t) { s.v += x; }
  static PYE_HD void merge(State& s, const State& o) { s.v += o.v; }
};

// Max (kMax) or min with the index of the winning edge; -1 means "no edge yet".
// NaN outranks every number so it propagates, as torch.max does.
template <typename acc_t, bool kMax>
struct ExtremumOp {
  struct State {
    acc_t v;
    int64_t arg;
  };
  static PYE_HD State init() { return State{acc_t(0), int64_t(-1)}; }
  // Does candidate (a, ia) replace the incumbent (b, ib)?
  static PYE_HD bool beats(acc_t a, int64_t ia, acc_t b, int64_t ib) {
    if (ia < 0) return false;
    if (ib < 0) return true;
    const bool a_nan = a != a, b_nan = b != b;
    if (a_nan || b_nan) return a_nan && (!b_nan || ia < ib);
    if (a == b) return ia < ib;
    return kMax ? a > b : a < b;
  }
  static PYE_HD void push(State& s, acc_t x, int64_t e) {
    if (beats(x, e, s.v, s.arg)) {
      s.v = x;
      s.arg = e;
    }
  }
  static PYE_HD void merge(State& s, const State& o) {
    if (beats(o.v, o.arg, s.v, s.arg)) s = o;
  }
};

// Running (max m, sum of exp(x - m)): the online-softmax state. -inf inputs
// contribute nothing; a row of only -inf ends with s == 0.
template <typename acc_t>
struct LogSumExpOp {
  struct State {
    acc_t m;
    acc_t s;
  };
  static PYE_HD State init() { return State{-std::numeric_limits<acc_t>::infinity(), acc_t(0)}; }
  static PYE_HD void merge(State& a, const State& b) {
    const acc_t neg_inf = -std::numeric_limits<acc_t>::infinity();
    if (b.m == neg_inf) return;
    if (a.m == neg_inf) {
      a = b;
    } else if (b.m > a.m) {
      a.s = a.s * fast_exp(a.m - b.m) + b.s;
      a.m = b.m;
    } else {
      a.s += b.s * fast_exp(b.m - a.m);  // NaN in either state propagates here
    }
  }
  static PYE_HD void push(State& s, acc_t x, int64_t) { merge(s, State{x, acc_t(1)}); }
};

}  // namespace pyengine
