"""Device time per op of one GPT training step on CUDA, vibetensor next to PyTorch (torch.profiler):
where the GPU time goes, op by op, so the slowest kernels can be named.

    python benchmarks/profile_ops.py [--config medium] [--amp] [--steps 5] [--top 25]

vibetensor side: every dispatched op is bracketed by CUDA events (outermost call only); the table
sums device time per op name; "not dispatched" is the rest of the step (optimizer, grad
accumulation, allocator). The events serialize nothing, but their own launches add host time, so
read device milliseconds here, not wall time.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vibetensor as vt  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402
from train_gpt import CONFIGS  # noqa: E402


def vt_train_step(cfg, amp, device="cuda", lib=vt, gpt=None):
    """train_gpt's vibetensor step (AdamW, bf16 autocast when amp) on one fixed batch, as a closure.
    ``lib``/``gpt``: another copy of the package and a gpt module built on it (scripts/ab_host.py)."""
    vt = lib
    G, C = (GPT, GPTConfig) if gpt is None else (gpt.GPT, gpt.GPTConfig)
    dim, layers, heads, batch, seq, vocab = cfg
    vt.manual_seed(0)
    m = G(C(vocab=vocab, seq=seq, dim=dim, layers=layers, heads=heads)).to(device)
    opt = vt.optim.AdamW(m.parameters(), lr=3e-4)
    b = np.random.default_rng(0).integers(0, vocab, size=(batch, seq + 1))
    x, y = vt.tensor(b[:, :-1], device=device), vt.tensor(b[:, 1:], device=device)
    F = vt.nn.functional

    def step():
        with vt.autocast("cuda", dtype=vt.bfloat16, enabled=amp):
            logits = m(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def profile_vt(cfg, amp, steps, top):
    import cupy as cp
    from vibetensor.core import dispatcher as D
    step = vt_train_step(cfg, amp)
    for _ in range(3):
        step()
    vt.cuda.synchronize()
    records = []
    depth = [0]
    orig = D.run_backend

    def timed(op, args, kwargs, tensors=None):
        if depth[0]:
            return orig(op, args, kwargs, tensors)
        depth[0] += 1
        e0, e1 = cp.cuda.Event(), cp.cuda.Event()
        e0.record()
        try:
            return orig(op, args, kwargs, tensors)
        finally:
            e1.record()
            depth[0] -= 1
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, vt.Tensor))[:2]
            records.append((op.qualname, str(args[0].dtype) if args and isinstance(args[0], vt.Tensor) else "",
                            shapes, e0, e1))

    D.run_backend = timed
    s0, s1 = cp.cuda.Event(), cp.cuda.Event()
    s0.record()
    try:
        for _ in range(steps):
            step()
    finally:
        s1.record()
        s1.synchronize()
        D.run_backend = orig
    total = cp.cuda.get_elapsed_time(s0, s1) / steps
    per = collections.defaultdict(lambda: [0.0, 0])
    for name, dt, shapes, e0, e1 in records:
        k = (name, dt, shapes)
        per[k][0] += cp.cuda.get_elapsed_time(e0, e1) / steps
        per[k][1] += 1
    counted = sum(v[0] for v in per.values())
    by_name = collections.defaultdict(float)
    for (name, _, _), v in per.items():
        by_name[name] += v[0]
    print(f"\n== vibetensor: {total:.2f} ms device time per step; dispatched ops {counted:.2f} ms "
          f"({len(records) // steps} calls/step); not dispatched {total - counted:.2f} ms")
    print("-- by op name (ms/step)")
    for name, ms in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{ms:9.3f}  {name}")
    print("-- by op, dtype, input shapes (ms/step, calls/step)")
    for (name, dt, shapes), (ms, n) in sorted(per.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{ms:9.3f} {n // steps:4d}  {name} {dt} {shapes}")


def profile_torch(cfg, amp, steps, top):
    import torch
    from reference.gpt_torch import GPT as TGPT
    dim, layers, heads, batch, seq, vocab = cfg
    m = TGPT(vocab, seq, dim, layers, heads).cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4)
    b = np.random.default_rng(0).integers(0, vocab, size=(batch, seq + 1))
    x, y = torch.from_numpy(b[:, :-1]).cuda(), torch.from_numpy(b[:, 1:]).cuda()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = m(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    evs = [e for e in prof.events() if e.device_type.name == "CUDA"]
    total = sum(e.device_time for e in evs) / 1e3 / steps
    per = collections.defaultdict(float)
    for e in evs:
        per[e.name[:90]] += e.device_time / 1e3 / steps
    print(f"\n== torch: {total:.2f} ms kernel time per step ({len(evs) // steps} kernels/step)")
    for name, ms in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{ms:9.3f}  {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="medium")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    cfg = CONFIGS[args.config]
    print(f"# {args.config} {'bf16 autocast' if args.amp else 'fp32'}: dim {cfg[0]} layers {cfg[1]} heads {cfg[2]} "
          f"batch {cfg[3]} seq {cfg[4]} vocab {cfg[5]}")
    profile_vt(cfg, args.amp, args.steps, args.top)
    if not args.no_torch:
        try:
            profile_torch(cfg, args.amp, args.steps, args.top)
        except ImportError as e:
            print(f"torch side skipped: {e}")


if __name__ == "__main__":
    main()
