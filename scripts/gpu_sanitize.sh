#!/usr/bin/env bash
# compute-sanitizer on one small case per CUDA kernel family (scripts/gpu_sanitize_cases.py):
# --tool memcheck (out-of-bounds and misaligned device accesses, leaks of device memory)
# and --tool racecheck (shared-memory hazards). One line per family and tool; exit status
# 1 if any reported an error. Run by scripts/gpu_check.sh's optional part (after the
# required part), or alone on a CUDA machine with pyengine built:
#   bash scripts/gpu_sanitize.sh [family ...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
command -v compute-sanitizer >/dev/null || { echo "gpu_sanitize: compute-sanitizer not found"; exit 1; }
fams=("$@")
[ "${#fams[@]}" -eq 0 ] && fams=(segment neighbors nufft gno attention local)
status=0
for tool in memcheck racecheck; do
  for fam in "${fams[@]}"; do
    log=/tmp/pyengine_sanitize_${tool}_${fam}.log
    t=$(date +%s)
    if compute-sanitizer --tool "$tool" --error-exitcode 99 --target-processes all \
        "$PY" scripts/gpu_sanitize_cases.py "$fam" >"$log" 2>&1; then
      echo "sanitize $tool $fam: clean ($(( $(date +%s) - t )) s)"
    else
      status=1
      echo "sanitize $tool $fam: FAILED ($(( $(date +%s) - t )) s)"
      grep -m 20 -E "=========|Error|error" "$log" | sed 's/^/    /'
    fi
  done
done
exit "$status"
