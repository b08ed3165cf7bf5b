#!/usr/bin/env bash
# One call of the device tool on a CUDA machine (at most 10 minutes, no network):
# build pyengine with its CUDA kernels, run the CUDA tests, then the issue-sized
# benchmarks of each kernel family, most important first, and print a one-screen
# summary. The required part (build, `pytest -m cuda`, GNO, attention, neighbor,
# NUFFT and segment benchmarks) is sized to finish in under 8 minutes: each step
# runs under `timeout` with the budget below (build about 2-3 min on 16 cores,
# tests <= 150 s, benchmarks <= 60 s each, every bench printing rows as it measures
# them so a cut-off one keeps what it has). The full suite is CI's job, not this
# script's. Optional steps follow (model benchmark, compute-sanitizer) if time is left.
#
# Results in $OUT (default /tmp/pyengine-gpu), five files: summary.md (the
# one-screen summary, also printed last), build.log, pytest_cuda.log,
# benchmarks.md (one "## bench.<family>" section per benchmark) and sanitize.log
# (only when the optional part runs). Exit status: that of the CUDA tests.
#
#   run(command="bash scripts/gpu_check.sh", timeout_s=600)       # the device tool
#   OUT=/tmp/out bash scripts/gpu_check.sh                          # any CUDA machine
#
# The image has scikit-build-core, pybind11, scipy and torch-geometric; wheels of
# anything else the tests import can be carried in .whl/ (installed to /tmp/site).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/pyengine-gpu}
mkdir -p "$OUT"
rm -f "$OUT/benchmarks.md" /tmp/pyengine_pytest_cuda.xml
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

"$PY" -m pip install --no-build-isolation --no-deps --no-index -e . >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
echo "gpu_check: built at $(elapsed)"
"$PY" -c "import pyengine; pyengine.info(); assert pyengine.build_info()['cuda_kernels'], 'built without CUDA'"

limit() { timeout -k 10 "$@"; }  # limit SECONDS command...: TERM at SECONDS, KILL 10 s later
bench() {  # bench SECONDS FAMILY ARGS...: one benchmark, appended to benchmarks.md
  local s=$1 fam=$2; shift 2
  echo "## bench.$fam $*" >>"$OUT/benchmarks.md"
  limit "$s" "$PY" -m "bench.$fam" --device cuda --markdown "$@" >>"$OUT/benchmarks.md" 2>&1 || true
  echo "gpu_check: bench.$fam done at $(elapsed)"
}

# ---- required: under 8 minutes in all
status=0
limit 150 "$PY" -m pytest -q -x --junitxml=/tmp/pyengine_pytest_cuda.xml -m cuda tests >"$OUT/pytest_cuda.log" 2>&1 || status=$?
tail -3 "$OUT/pytest_cuda.log"
echo "gpu_check: CUDA tests done at $(elapsed)"
# GNO integral at the issue's size (N = 400k, 32 neighbors, E = 12.8M, C = 64), TF32, fused vs plain.
bench 60 gno --precision tf32 --max-seconds 2
# Attention aggregation and local integral, N = 200k points, ~32 neighbors.
bench 60 attention --points 200k --max-seconds 2
bench 60 neighbors --max-seconds 2
bench 60 nufft --max-seconds 2
bench 60 segment --max-seconds 2
"$PY" scripts/gpu_summary.py "$OUT" /tmp/pyengine_pytest_cuda.xml >/dev/null
echo "gpu_check: required part done at $(elapsed)"

# ---- optional: only if time is left in the call
bench 90 models --points 100k
# GAOT vs the official formulation at GAOT-3D sizes (100k points, 64x64x32 tokens), GAOT only.
bench 120 models --peers --no-gno --gaot-points 100k --gaot-grid 64,64,32 --gaot-radius 0.05 --gaot-scales 1,1.5 --gaot-samples 1,1 --steps 3
if [ -x scripts/gpu_sanitize.sh ] && command -v compute-sanitizer >/dev/null; then
  limit 120 bash scripts/gpu_sanitize.sh >"$OUT/sanitize.log" 2>&1 || true
  echo "gpu_check: sanitizers done at $(elapsed)"
fi
# File datasets (issue 16): GPU step time with and without the loader, 4 surfaces of 100k points.
bench 90 files --quick

echo "================ summary ($(elapsed))"
"$PY" scripts/gpu_summary.py "$OUT" /tmp/pyengine_pytest_cuda.xml
exit "$status"
