"""Run each example next to its PyTorch twin (same config, seed, data, initial weights) in one call and
print a Markdown table for BENCHMARKS.md: final loss / accuracy of both, ms/step of both, ratio.

    python benchmarks/reference/compare.py --config full --device cuda
    python benchmarks/reference/compare.py --only minigpt_reverse,mnist --steps 200 --device cpu
    python benchmarks/reference/compare.py --config full --device cuda --data-dir-cifar ~/cifar-10-batches-bin
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# example -> (extra args for both, the quality metric(s) to report)
JOBS = {
    "minigpt_reverse": ([], ["accuracy", "loss"]),
    "mnist": (["--model", "cnn"], ["test_accuracy", "loss"]),
    "mnist_mlp": (["--model", "mlp"], ["test_accuracy", "loss"]),
    "vit_cifar": ([], ["test_accuracy", "train_accuracy", "loss"]),
    "char_gpt": ([], ["val_loss", "train_loss"]),
    "ddp_mlp": ([], ["accuracy", "loss"]),
}


def run(cmd, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "r.json")
        p = subprocess.run(cmd + ["--result-json", out], env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=ROOT)
        if p.returncode != 0 or not os.path.exists(out):
            print(f"FAILED ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}", file=sys.stderr)
            return None
        with open(out) as f:
            return json.load(f)


def print_row(name, metrics, rv, rt):
    if rv is None or rt is None:
        print(f"| {name} | failed: {'vt' if rv is None else 'torch'} | | | | | | |", flush=True)
        return
    m = "; ".join(metrics)
    vals_v = " / ".join(f"{rv[k]:.4f}" for k in metrics)
    vals_t = " / ".join(f"{rt[k]:.4f}" for k in metrics)
    ratio = rv["ms_per_step"] / rt["ms_per_step"] if rt["ms_per_step"] else float("nan")
    print(f"| {name} | {rv['steps']} / {rt['steps']} | {m} | {vals_v} | {vals_t} | {rv['ms_per_step']:.2f} | "
          f"{rt['ms_per_step']:.2f} | {ratio:.2f}x |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small", choices=["small", "full"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=None, help="override every example's step count")
    ap.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(JOBS))
    ap.add_argument("--nproc", type=int, default=1, help="vt ranks (vt-launch -n) for the vibetensor side")
    ap.add_argument("--data-dir-cifar", default=None)
    ap.add_argument("--data-dir-mnist", default=None)
    ap.add_argument("--timeout", type=int, default=3600)
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(JOBS)
    rows = []
    print("\n| example | steps (vt / torch) | metric | vibetensor | torch | vt ms/step | torch ms/step | vt / torch time |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for name in names:
        extra, metrics = JOBS[name]
        script = "mnist" if name.startswith("mnist") else name
        common = ["--config", a.config, "--device", a.device, *extra]
        if a.steps:
            common += ["--steps", str(a.steps)]
        if script == "vit_cifar" and a.data_dir_cifar:
            common += ["--data-dir", a.data_dir_cifar]
        if script == "mnist" and a.data_dir_mnist:
            common += ["--data-dir", a.data_dir_mnist]
        vt_cmd = [sys.executable, os.path.join(ROOT, "examples", f"{script}.py"), *common, "--no-progress"]
        if a.nproc > 1:
            vt_cmd = [sys.executable, "-m", "vibetensor.launch", "-n", str(a.nproc), *vt_cmd[1:]]
        th_cmd = [sys.executable, os.path.join(HERE, f"{script}_torch.py"), *common]
        print(f"== {name}: vibetensor ...", file=sys.stderr, flush=True)
        rv = run(vt_cmd, a.timeout)
        print(f"== {name}: torch ...", file=sys.stderr, flush=True)
        rt = run(th_cmd, a.timeout)
        rows.append((name, metrics, rv, rt))
        print_row(name, metrics, rv, rt)  # as each finishes: a time limit keeps the rows already done
    dev = rows[0][2]["device"] if rows and rows[0][2] else a.device
    print(f"\nconfig {a.config}, device {dev}, vt ranks {a.nproc}; same seed, data and initial weights on both sides")


if __name__ == "__main__":
    main()
