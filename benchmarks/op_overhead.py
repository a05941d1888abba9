"""Host overhead per small op (add, matmul, Linear+GELU forward/backward) on CPU and CUDA, as a
ratio against PyTorch measured in the same run; on CUDA also elementwise-add bandwidth on 1 GiB and
8192^3 half-precision matmul TFLOP/s.

    python benchmarks/op_overhead.py [--device cpu|cuda|all] [--iters N]

Ratios are vt/torch: below 1.0 means vibetensor is faster (for times) -- for bandwidth and
TFLOP/s the ratio is vt/torch of the rate, so above 1.0 is better.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import vibetensor as vt

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def _time(fn, iters, sync=None):
    for _ in range(max(3, iters // 10)):
        fn()
    if sync:
        sync()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if sync:
            sync()
        best = min(best, (time.perf_counter() - t0) / iters)
    return best


def small_ops(dev: str, iters: int):
    rows = []
    x = vt.randn(32, 32, device=dev)
    y = vt.randn(32, 32, device=dev)
    lin = vt.nn.Linear(32, 32).to(dev)
    xi = vt.randn(16, 32, device=dev, requires_grad=True)
    tdev = "cuda" if dev == "cuda" else "cpu"
    tx = torch.randn(32, 32, device=tdev)
    ty = torch.randn(32, 32, device=tdev)
    tlin = torch.nn.Linear(32, 32).to(tdev)
    txi = torch.randn(16, 32, device=tdev, requires_grad=True)
    vsync = vt.cuda.synchronize if dev == "cuda" else None
    tsync = torch.cuda.synchronize if dev == "cuda" else None

    def vt_fb():
        out = vt.nn.functional.gelu(lin(xi)).sum()
        out.backward()

    def t_fb():
        out = torch.nn.functional.gelu(tlin(txi)).sum()
        out.backward()

    xv = vt.randn(4, 16, 32, device=dev, requires_grad=True)
    txv = torch.randn(4, 16, 32, device=tdev, requires_grad=True)
    # an attention block's head split: reshape + transpose of a tensor that records grad (a GPT step
    # makes ~130 such view ops forward and backward)
    for name, f_vt, f_t in [("add", lambda: x + y, lambda: tx + ty),
                            ("matmul", lambda: x @ y, lambda: tx @ ty),
                            ("linear+gelu fwd/bwd", vt_fb, t_fb),
                            ("reshape+transpose (grad)", lambda: xv.reshape(4, 16, 4, 8).transpose(1, 2),
                             lambda: txv.reshape(4, 16, 4, 8).transpose(1, 2))]:
        a = _time(f_vt, iters, vsync)
        b = _time(f_t, iters, tsync)
        rows.append((dev, name, a * 1e6, b * 1e6, a / b))
    return rows


def cuda_throughput():
    rows = []
    n = (1 << 30) // 4
    a = vt.randn(n, device="cuda")
    b = vt.randn(n, device="cuda")
    ta = torch.randn(n, device="cuda")
    tb = torch.randn(n, device="cuda")

    def bw(fn, sync):
        s = _time(fn, 10, sync)
        return 3 * n * 4 / s / 1e9  # read 2, write 1
    v = bw(lambda: a + b, vt.cuda.synchronize)
    t = bw(lambda: ta + tb, torch.cuda.synchronize)
    rows.append(("cuda", "add 1 GiB (GB/s)", v, t, v / t))
    a = b = ta = tb = None  # free the 4 GiB before the matmuls (the lambdas above are done with them)
    for dt, tdt in [(vt.bfloat16, torch.bfloat16), (vt.float16, torch.float16)]:
        m = 8192
        try:
            a = vt.randn(m, m, device="cuda").to(dt)
        except TypeError as e:
            rows.append(("cuda", f"matmul 8192^3 {dt.name}", float("nan"), float("nan"), float("nan")))
            print(f"  {dt.name}: {e}")
            continue
        ta = torch.randn(m, m, device="cuda", dtype=tdt)
        fl = 2 * m ** 3
        v = fl / _time(lambda: a @ a, 10, vt.cuda.synchronize) / 1e12
        t = fl / _time(lambda: ta @ ta, 10, torch.cuda.synchronize) / 1e12
        rows.append(("cuda", f"matmul 8192^3 {dt.name} (TFLOP/s)", v, t, v / t))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args()
    if torch is None:
        raise SystemExit("PyTorch is the reference: pip install torch")
    devs = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devs and not vt.cuda.is_available():
        devs.remove("cuda")
        print("no CUDA GPU: CPU only")
    rows = []
    for d in devs:
        rows += small_ops(d, args.iters)
    if "cuda" in devs:
        rows += cuda_throughput()
    print(f"{'device':6} {'op':36} {'vibetensor':>12} {'torch':>12} {'vt/torch':>9}")
    for dev, name, a, b, r in rows:
        unit = "" if "(" in name else " us"
        print(f"{dev:6} {name:36} {a:10.2f}{unit:3} {b:10.2f}{unit:3} {r:8.2f}")
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
