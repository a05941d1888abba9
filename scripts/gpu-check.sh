#!/usr/bin/env bash
# Run on the GPU machine: install without deps (its python3 has CuPy, NCCL, mpi4py, torch), then
# the GPU-relevant tests. Usage: scripts/gpu-check.sh [pytest args...]
set -uo pipefail
export PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || python3 -m pip install --no-deps --no-build-isolation -e .
python3 - <<'PY'
import cupy, numpy, sys
print("python", sys.version.split()[0], "cupy", cupy.__version__, "numpy", numpy.__version__)
try:
    import ml_dtypes
    a = cupy.zeros(4, dtype=ml_dtypes.bfloat16); print("cupy bfloat16: OK", (a + a).dtype)
except Exception as e:
    print("cupy bfloat16: NO", type(e).__name__, e)
PY
