"""Kernels per training step by name, vibetensor next to PyTorch eager (benchmarks/train_gpt.py's two steps
from the same weights), through torch.profiler (CUPTI sees CuPy's and our kernels too), plus PyTorch's host
time per aten op and autograd node (CPU activity; the profiler's own overhead inflates small ops).

    python scripts/kernel_compare.py [--config medium] [--mode bf16] [--steps 3] [--top 45]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

from torch.profiler import ProfilerActivity, profile  # noqa: E402

import vibetensor as vt  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402
from train_gpt import CONFIGS, data, torch_side, vt_side  # noqa: E402

_NOT_KERNELS = ("aten::", "autograd::", "cuda", "Optimizer", "ProfilerStep")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="medium", choices=list(CONFIGS))
    ap.add_argument("--mode", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=45)
    a = ap.parse_args()
    cfg = CONFIGS[a.config]
    vt.manual_seed(0)
    init = GPT(GPTConfig(vocab=cfg[5], seq=cfg[4], dim=cfg[0], layers=cfg[1], heads=cfg[2])).state_dict()
    batches = data(cfg, 8)
    sides = {"vt": vt_side(cfg, batches, a.mode, init), "torch": torch_side(cfg, batches, a.mode, init)}
    for name, (fn, sync, _) in sides.items():
        acts = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if name == "torch" else [])
        with profile(activities=acts) as prof:
            for i in range(a.steps):
                fn(i)
            sync()
        ev = prof.key_averages()
        kern = [e for e in ev if e.self_device_time_total > 0 and not e.key.startswith(_NOT_KERNELS)]
        n = sum(e.count for e in kern) // a.steps
        dt = sum(e.self_device_time_total for e in kern) / a.steps / 1e3
        print(f"## {name} {a.config} {a.mode}: {n} kernels/step, {dt:.2f} ms device/step (count, ms/step, kernel)")
        for e in sorted(kern, key=lambda e: -e.self_device_time_total)[:a.top]:
            print(f"  {e.count // a.steps:4d}x {e.self_device_time_total / a.steps / 1e3:7.3f} ms  {e.key[:100]}")
        if name == "torch":
            cpu = [e for e in ev if e.key.startswith(("aten::", "autograd::engine")) and e.count >= a.steps]
            print("## torch host time per op (calls/step, inclusive us per call, ms/step)")
            for e in sorted(cpu, key=lambda e: -e.cpu_time_total)[:a.top]:
                print(f"  {e.count // a.steps:4d}x {e.cpu_time_total / e.count:8.1f} us  "
                      f"{e.cpu_time_total / a.steps / 1e3:6.2f} ms  {e.key[:90]}")


if __name__ == "__main__":
    main()
