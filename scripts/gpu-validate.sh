#!/usr/bin/env bash
# GPU machine: every GPU test (single process, then MPI ranks sharing the GPU), logs under $OUT.
# Usage: [VT_TEST_WORKERS=8] scripts/gpu-validate.sh  (needs .whl with pytest-mpi when the machine lacks it;
# VT_TEST_WORKERS, with pytest-xdist and execnet wheels in .whl too, runs the single-process suites on that many
# workers sharing the GPU, for less device time: 8 workers took them from ~305 s to ~60 s on an H100, fourteenth
# session)
set -uo pipefail
export PYTHONUNBUFFERED=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
scripts/gpu-check.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
run() { local name=$1; shift; echo "== $name: $*"; timeout 420 "$@" > "$OUT/$name.log" 2>&1; echo "   rc=$? $(grep -E '(passed|failed|error)' "$OUT/$name.log" | tail -1)"; grep -E '^(FAILED|ERROR)' "$OUT/$name.log" | head -15; }
N=${VT_TEST_WORKERS:+-n $VT_TEST_WORKERS}
run gpu_tests python3 -m pytest -q $N -m gpu -p no:cacheprovider tests
run cuda_param python3 -m pytest -q $N -k cuda -p no:cacheprovider tests/core
run mpi_suite python3 -m pytest -q -p no:cacheprovider tests/test_mpi_suite.py
# host cost per op and a toy GPT step next to torch on the GPU (the third session changed the shared
# dispatcher path without a GPU: these rows are its first GPU figures)
run host_step python3 benchmarks/host_step.py --device cuda --iters 5000 --steps 100
tail -12 "$OUT/host_step.log"
