"""Causal self-attention forward and forward+backward on one GPU: vibetensor's paths (flash kernels;
materialized scores through cuBLAS + fused softmax, in causal row blocks where ``causal_blocks`` takes
them, and as one full product) next to PyTorch's F.scaled_dot_product_attention, same shapes, same run.
Times are CUDA-event device times per call (ms, median of --reps) and wall times including the host
(which decide small problems).

    python benchmarks/attention.py [--reps 20] [--shapes reverse,medium,gpt2-small,d96,d128]

The d96/d128 shapes (head dims with tensor-core flash kernels only) have no float32 flash column:
float32 takes the materialized path there.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

SHAPES = {  # the attention calls of benchmarks/train_gpt.py's configs: (batch, heads, seq, head dim)
    "reverse": (64, 4, 64, 32),
    "medium": (32, 8, 256, 64),
    "gpt2-small": (16, 12, 512, 64),
    "d96": (8, 16, 1024, 96),    # head dims of larger models: tensor-core flash kernels only
    "d128": (8, 16, 1024, 128),
}


def timed(fn, reps, sync, event):
    fn()
    sync()
    dev, wall = [], []
    for _ in range(reps):
        e0, e1 = event(), event()
        t0 = time.perf_counter()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        wall.append(time.perf_counter() - t0)
        dev.append(e0.elapsed_time(e1))
    return statistics.median(dev), statistics.median(wall) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    args = ap.parse_args()
    bad = [s for s in args.shapes.split(",") if s not in SHAPES]
    if bad:
        ap.error(f"unknown shapes {bad}; choose from {list(SHAPES)}")
    import numpy as np
    import torch
    import vibetensor as vt
    from vibetensor import _env
    from vibetensor.cuda import causal_blocks
    F = vt.nn.functional
    modes = (("on", causal_blocks.MIN_SCORES), ("off", causal_blocks.MIN_SCORES), ("off", 1 << 62))
    ev = lambda: vt.cuda.Event(enable_timing=True)  # noqa: E731
    tev = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
    print(f"GPU: {vt.cuda.get_device_name(0)}; torch {torch.__version__}; device ms / wall ms per call (median)")
    print(f"{'shape':11} {'dtype':8} {'pass':8} {'vt flash':>15} {'vt material.':>15} {'one block':>15} "
          f"{'torch sdpa':>15}")
    from vibetensor.cuda import kernels as K
    for name in args.shapes.split(","):
        B, H, T, D = SHAPES[name]
        for dt, tdt in ((vt.float32, torch.float32), (vt.bfloat16, torch.bfloat16)):
            rng = np.random.default_rng(0)
            arrs = [rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(3)]
            g = rng.standard_normal((B, H, T, D)).astype(np.float32)
            res = []
            for mode, min_scores in modes:
                _env._flags = dataclasses.replace(_env.flags(), flash_attention=mode)
                causal_blocks.MIN_SCORES = min_scores
                q, k, v = (vt.tensor(a, device="cuda", dtype=dt, requires_grad=True) for a in arrs)
                gv = vt.tensor(g, device="cuda", dtype=dt)
                fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
                fb = lambda: fwd().backward(gv)  # noqa: E731
                res.append((timed(fwd, args.reps, vt.cuda.synchronize, ev),
                            timed(fb, args.reps, vt.cuda.synchronize, ev)))
            _env._flags = None
            causal_blocks.MIN_SCORES = modes[0][1]
            tq, tk, tv = (torch.tensor(a, device="cuda", dtype=tdt, requires_grad=True) for a in arrs)
            tg = torch.tensor(g, device="cuda", dtype=tdt)
            tfwd = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)  # noqa: E731
            tfb = lambda: tfwd().backward(tg)  # noqa: E731
            tres = (timed(tfwd, args.reps, torch.cuda.synchronize, tev), timed(tfb, args.reps, torch.cuda.synchronize, tev))
            flash = K.flash_ok(q._data, k._data, v._data)
            for i, pas in enumerate(("fwd", "fwd+bwd")):
                cells = [f"{r[i][0]:6.3f} /{r[i][1]:6.3f}" for r in res + [tres]]
                if not flash:
                    cells[0] = "-"
                print(f"{name:11} {dt.name:8} {pas:8} " + " ".join(f"{c:>15}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
