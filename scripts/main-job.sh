#!/usr/bin/env bash
# The main job: install into .venv and run a real training run through vt-launch.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q -e '.[mpi]'
exec vt-launch -n 2 examples/minigpt_reverse.py "$@"
