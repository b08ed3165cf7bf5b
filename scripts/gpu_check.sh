#!/usr/bin/env bash
# On a CUDA machine: build pyengine with its CUDA kernels, run the CUDA tests, the
# issue-sized fused-layer benchmarks (GNO integral, attention), the whole suite, then
# the other GPU benchmarks, most important numbers first. Results go to $OUT
# (default /tmp/pyengine-gpu): build.log, pytest_cuda.log, bench_integral.md,
# bench_attention.md, pytest_all.log, bench_segment.md, ...
#
# Meant for one call of the device tool (no network there; one command may run 10
# minutes, so the most important steps come first and later ones may be cut off). Its image already has
# scikit-build-core, pybind11, scipy and torch-geometric; wheels of anything else
# the tests import can be carried in .whl/ (installed to /tmp/site below).
# Test failures do not stop the script: the benchmarks still run, and the exit
# status is that of the CUDA tests. Every step after the build runs under `timeout`
# (seconds below), so one hanging step cannot use up the session; a benchmark
# prints each row as soon as it is measured, so a timed-out one keeps its rows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/pyengine-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}

start=$(date +%s)
"$PY" -m pip install --no-build-isolation --no-deps --no-index -e . >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
echo "gpu_check: build $(( $(date +%s) - start )) s"
"$PY" -c "import pyengine; pyengine.info(); assert pyengine.build_info()['cuda_kernels'], 'built without CUDA'"

limit() { timeout -k 10 "$@"; }  # limit SECONDS command...: TERM at SECONDS, KILL 10 s later

status=0
limit 300 "$PY" -m pytest -q -m cuda tests 2>&1 | tee "$OUT/pytest_cuda.log" || status=$?
# GNO integral at the issue's size (N = 400k, 32 neighbors, E = 12.8M, C = 64), TF32, fused vs plain.
limit 120 "$PY" -m bench.gno --device cuda --precision tf32 --max-seconds 2 --markdown 2>&1 \
  | tee "$OUT/bench_integral.md" || true
# Attention aggregation and local integral, N = 200k points, ~32 neighbors (E ~ 6.4M).
limit 120 "$PY" -m bench.attention --device cuda --points 200k --max-seconds 2 --markdown 2>&1 \
  | tee "$OUT/bench_attention.md" || true
# The emulated tests run the CUDA code on the CPU: CI's job, not worth GPU-machine time.
limit 300 "$PY" -m pytest -q -m "not emulated" tests >"$OUT/pytest_all.log" 2>&1 || true
tail -5 "$OUT/pytest_all.log"
limit 120 "$PY" -m bench.segment --device cuda --markdown 2>&1 | tee "$OUT/bench_segment.md" || true
limit 120 "$PY" -m bench.neighbors --device cuda --markdown 2>&1 | tee "$OUT/bench_neighbors.md" || true
limit 120 "$PY" -m bench.nufft --device cuda --markdown 2>&1 | tee "$OUT/bench_nufft.md" || true
limit 120 "$PY" -m bench.models --device cuda --points 100k --markdown 2>&1 | tee "$OUT/bench_models.md" || true
exit "$status"
