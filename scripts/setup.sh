#!/usr/bin/env bash
# Idempotent set-up for a fresh clone: creates .venv, installs torch (CPU 2.13.0
# unless a CUDA torch is already there to reuse), the build and test tools, and
# builds pyengine (editable) against that torch. Safe to run again: it only
# rebuilds what changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
    echo "setup: reusing the CUDA torch of $PYTHON (venv with system site packages)"
    "$PYTHON" -m venv --system-site-packages .venv
  else
    "$PYTHON" -m venv .venv
  fi
fi
PY=.venv/bin/python

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==2.13.0 (CPU)"
  "$PY" -m pip install -q torch==2.13.0
fi
# Everything else; none of these depends on torch, so no other torch is pulled.
"$PY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja "numpy>=1.24" "tqdm>=4.60" \
  "pytest>=7" "scipy>=1.10" "torch-geometric>=2.4" "trimesh>=4.0" "meshio>=5.3" "gmsh>=4.11" \
  "scikit-fem>=9.0" "matplotlib>=3.7" "pyyaml>=6.0" "finufft>=2.2" "rtree>=1.0" "h5py>=3.8" \
  "threadpoolctl>=3.1" "vtk>=9.3" "hypothesis>=6.100"
# hypothesis: the property-based fuzz tests.
# rtree: trimesh's closest-point and inside tests; h5py: meshio's XDMF (even the XML variant);
# vtk: VTP files and OpenFOAM cases in file datasets (meshio reads neither);
# threadpoolctl: keeps scipy's BLAS single-threaded inside the FEM solvers (threaded dot products
# in CG are 10x slower on a busy 2-core machine, and not bit-reproducible).

echo "setup: building pyengine against torch $("$PY" -c 'import torch; print(torch.__version__)')"
"$PY" -m pip install -q --no-build-isolation --no-deps -e .
