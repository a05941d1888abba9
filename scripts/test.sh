#!/usr/bin/env bash
# Every test: install the test extra into .venv and run pytest (MPI suites run under mpiexec inside it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q -e '.[mpi,test]'
exec python -m pytest -q "$@"
