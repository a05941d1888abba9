#!/usr/bin/env bash
# GPU machine: issue 3's speed figures in one call (each command under its own timeout), logs under
# $OUT. Run after scripts/gpu-validate.sh has passed. Usage: scripts/gpu-bench.sh [--compile]
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
run() { local name=$1 limit=$2; shift 2; echo "== $name: $*"; timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "   rc=$?"; tail -n 16 "$OUT/$name.log"; }
run train_gpt 260 python3 benchmarks/train_gpt.py --configs reverse,medium,gpt2-small --modes fp32,bf16,graph,graph-bf16 --steps 50 --rounds 5
run attention 120 python3 benchmarks/attention.py --reps 8
run flash_variants 150 python3 scripts/flash_variants.py
run op_overhead 90 python3 benchmarks/op_overhead.py --device cuda --iters 1500
run kernel_compare 90 python3 scripts/kernel_compare.py --config medium --mode bf16
run host_by_op 90 python3 scripts/host_by_op.py --config medium --amp --steps 4 --cprofile 40
run host_costs 60 python3 benchmarks/host_costs.py --iters 1500
run loss_drift 150 python3 benchmarks/loss_drift.py --configs medium,gpt2-small --steps 50
if [ "${1:-}" = "--compile" ]; then
  run train_gpt_compile 300 python3 benchmarks/train_gpt.py --configs reverse,medium --modes fp32,bf16 --steps 20 --compile
fi
