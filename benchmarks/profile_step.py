"""Where a GPT training step's time and memory go on CUDA: host profile (cProfile, top functions)
and the largest live blocks at peak with their allocation stacks.

    python benchmarks/profile_step.py [--config reverse] [--steps 20]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vibetensor as vt  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402
from train_gpt import CONFIGS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="reverse")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--amp", action="store_true")
    args = ap.parse_args()
    dim, layers, heads, batch, seq, vocab = CONFIGS[args.config]
    m = GPT(GPTConfig(vocab=vocab, seq=seq, dim=dim, layers=layers, heads=heads)).to("cuda")
    opt = vt.optim.AdamW(m.parameters(), lr=3e-4)
    rng = np.random.default_rng(0)
    b = rng.integers(0, vocab, size=(batch, seq + 1))
    x, y = vt.tensor(b[:, :-1], device="cuda"), vt.tensor(b[:, 1:], device="cuda")
    F = vt.nn.functional

    def step():
        with vt.autocast("cuda", dtype=vt.bfloat16, enabled=args.amp):
            logits = m(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    vt.cuda.synchronize()
    base = vt.cuda.memory_allocated()
    vt.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(args.steps):
        step()
    vt.cuda.synchronize()
    pr.disable()
    dt = (time.perf_counter() - t0) / args.steps
    print(f"{args.config}: {dt * 1e3:.2f} ms/step (profiled), allocated before {base / 2**20:.1f} MiB, "
          f"peak {vt.cuda.max_memory_allocated() / 2**20:.1f} MiB, reserved {vt.cuda.memory_reserved() / 2**20:.1f} MiB")
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(30)
    print(s.getvalue()[-7000:])
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(40)
    print(s.getvalue()[-9000:])
    # host issue time vs device time per step (unprofiled)
    vt.cuda.synchronize()
    e0, e1 = vt.cuda.Event(enable_timing=True), vt.cuda.Event(enable_timing=True)
    e0.record()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    host = (time.perf_counter() - t0) / args.steps
    e1.record()
    e1.synchronize()
    total = (time.perf_counter() - t0) / args.steps
    print(f"unprofiled: host issue {host * 1e3:.2f} ms/step, wall {total * 1e3:.2f} ms/step, "
          f"device (events) {e0.elapsed_time(e1) / args.steps:.2f} ms/step")
    # largest live blocks during one step
    vt.cuda._record_memory_history(True)
    peak = {"bytes": 0, "blocks": []}
    orig = step

    loss = orig()
    snap = vt.cuda.memory_snapshot()
    vt.cuda._record_memory_history(False)
    blocks = sorted(snap["blocks"], key=lambda b: -b["size"])[:8]
    print("largest live blocks after a step:")
    for blk in blocks:
        where = [f for f in blk["frames"] if "vibetensor" in f or "examples" in f][-3:]
        print(f"  {blk['size'] / 2**20:8.2f} MiB  " + " | ".join(w.strip().splitlines()[0] for w in where))
    del peak, loss


if __name__ == "__main__":
    main()
