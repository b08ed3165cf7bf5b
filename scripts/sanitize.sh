#!/usr/bin/env bash
# Builds the CPU extension with AddressSanitizer + UndefinedBehaviorSanitizer into a cached
# build folder (build-asan/, incremental: only changed sources recompile) and runs the op
# tests with it. Any ASan report (out-of-bounds, use-after-free, ...) or UBSan report
# (signed overflow, bad shift, float->int overflow, misaligned access, ...) aborts the
# process, so the run fails.
#
#   bash scripts/sanitize.sh                 # the op families' CPU tests
#   bash scripts/sanitize.sh tests/nufft -k large   # other pytest arguments
#
# Needs scripts/setup.sh's .venv (torch, pybind11, pytest) and gcc/g++ with libasan/libubsan.
# The instrumented extension is loaded in place of the installed one by a bootstrap (the
# package's Python files are the working tree's); the Python interpreter itself is not
# instrumented, so leak detection is off (CPython's and torch's caches are not leaks).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
BUILD=${PYENGINE_ASAN_BUILD:-build-asan}
JOBS=${JOBS:-2}

CXX=${CXX:-g++}
LIBASAN=$("$CXX" -print-file-name=libasan.so)
LIBUBSAN=$("$CXX" -print-file-name=libubsan.so)
[ -f "$LIBASAN" ] || { echo "sanitize: libasan not found for $CXX" >&2; exit 1; }

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g1"
t0=$(date +%s)
# Build cost (CPU-seconds, shared 2-core machine, 2026-12-05): -O3 with pybind11's LTO was
# ~580 s wall under load; -O1 without LTO 348 CPU-s; -O0 as a unity build (two translation units
# of 11 sources, so torch's headers are parsed twice instead of 22 times) 72 CPU-s. -O0 keeps
# every memory access and UB check in place, so nothing is optimised away from the sanitizers.
# ccache is used when installed (harmless when absent). Non-default settings: PYENGINE_CXX_OPT
# (CMakeLists.txt, -O3 otherwise) and no LTO; the normal build is unchanged.
LAUNCH=()
if command -v ccache >/dev/null; then LAUNCH=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DPYENGINE_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF -DPYENGINE_CXX_OPT=-O0 \
    -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=11 "${LAUNCH[@]}" \
    -DPython_EXECUTABLE="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
    -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
    -DCMAKE_MODULE_LINKER_FLAGS="$SAN" >"$BUILD.cmake.log" 2>&1 || { cat "$BUILD.cmake.log"; exit 1; }
fi
nice cmake --build "$BUILD" -j "$JOBS"
SO=$(ls "$BUILD"/_C*.so | head -1)
echo "sanitize: build $(( $(date +%s) - t0 )) s -> $SO"

if [ "$#" -eq 0 ]; then
  # --capture=sys: pytest's default fd capture would swallow the sanitizer's report (written
  # to fd 2 just before the abort); the run would fail with exit 134 but without the report.
  set -- tests/segment tests/neighbors tests/nufft tests/gno tests/attention tests/local \
    -m "not cuda" -k "not emulated and not fuzz" -p no:cacheprovider -q -x --capture=sys
fi
t1=$(date +%s)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:alloc_dealloc_mismatch=0:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Child processes inherit LD_PRELOAD; the fuzz children (tests/fuzz_harness.py) also load the
# sanitized extension (PYENGINE_SANITIZED_EXT), other subprocess tests the normal one.
set +e
LD_PRELOAD="$LIBASAN $LIBUBSAN" PYENGINE_SANITIZED_EXT="$(realpath "$SO")" "$PY" - "$@" <<'PYEOF'
import importlib.util
import os
import sys

import torch  # noqa: F401  (libtorch first, as pyengine/_extension.py does)

spec = importlib.util.spec_from_file_location("pyengine._C", os.environ["PYENGINE_SANITIZED_EXT"])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["pyengine._C"] = mod
import pyengine  # noqa: E402

assert pyengine._C is mod, "the sanitized extension was not picked up"
import pytest  # noqa: E402

sys.exit(pytest.main(sys.argv[1:]))
PYEOF
rc=$?
echo "sanitize: tests $(( $(date +%s) - t1 )) s, exit $rc"
exit $rc
