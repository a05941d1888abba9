"""Kernel-level device time of vibetensor's GPT training step (benchmarks/train_gpt.py's), through
torch.profiler: CUPTI sees every kernel in the process, CuPy's and our RawKernels included.

    python scripts/kernel_profile.py [--config medium] [--amp] [--steps 3] [--top 30]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

from torch.profiler import ProfilerActivity, profile  # noqa: E402

import vibetensor as vt  # noqa: E402
from profile_ops import vt_train_step  # noqa: E402
from train_gpt import CONFIGS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="medium")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    step = vt_train_step(CONFIGS[a.config], a.amp)
    for _ in range(3):
        step()
    vt.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.steps):
            step()
        vt.cuda.synchronize()
    ev = [e for e in prof.key_averages()]
    tot = sum(e.device_time_total for e in ev)
    n = sum(e.count for e in ev) // a.steps
    print(f"# vt {a.config} amp={a.amp}: {tot / a.steps / 1e3:.2f} ms device time per step, {n} kernels/step, "
          f"kernels by total time")
    for e in sorted(ev, key=lambda e: -e.device_time_total)[:a.top]:
        print(f"{e.device_time_total / a.steps / 1e3:8.3f} ms {e.count // a.steps:5d}x  {e.key[:110]}")


if __name__ == "__main__":
    main()
