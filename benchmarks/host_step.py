"""Host (Python) cost of eager vibetensor next to PyTorch eager, on tensors so small that the arithmetic
is negligible: single ops on 32x32, and a whole GPT training step (dim 16, 2 layers, 2 heads, batch 2,
seq 8, AdamW) from the same initial weights. Rounds alternate vt and torch; each figure is the best
round. Runs on CPU (the default; what CI machines have) or on a GPU.

    python benchmarks/host_step.py [--device cpu|cuda] [--iters 20000] [--steps 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vibetensor as vt  # noqa: E402

TINY = dict(vocab=36, seq=8, dim=16, layers=2, heads=2, batch=2)


def best_of(fn, n, sync, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def op_pairs(dev):
    import torch
    F, TF = vt.nn.functional, torch.nn.functional
    x, y, w = (vt.randn(32, 32, device=dev) for _ in range(3))
    b = vt.randn(32, device=dev)
    xg = vt.randn(32, 32, device=dev, requires_grad=True)
    tx, ty, tw = (torch.from_numpy(t.cpu().numpy()).to(dev) for t in (x, y, w))
    tb = torch.from_numpy(b.cpu().numpy()).to(dev)
    txg = tx.clone().requires_grad_(True)
    return [
        ("add", lambda: x + y, lambda: tx + ty),
        ("mul by a Python float", lambda: x * 0.5, lambda: tx * 0.5),
        ("view", lambda: x.view(16, 64), lambda: tx.view(16, 64)),
        ("sum(dim=1)", lambda: x.sum(1), lambda: tx.sum(1)),
        ("add, input requires grad", lambda: xg + y, lambda: txg + ty),
        ("linear", lambda: F.linear(x, w, b), lambda: TF.linear(tx, tw, tb)),
        ("gelu", lambda: F.gelu(x), lambda: TF.gelu(tx)),
        ("add_ (in place)", lambda: x.add_(y), lambda: tx.add_(ty)),
    ]


def gpt_steps(dev):
    import torch
    from gpt import GPT, GPTConfig
    from reference.gpt_torch import GPT as TGPT, load_from_vt
    c = TINY
    vt.manual_seed(0)
    m = GPT(GPTConfig(vocab=c["vocab"], seq=c["seq"], dim=c["dim"], layers=c["layers"], heads=c["heads"]))
    tm = TGPT(c["vocab"], c["seq"], c["dim"], c["layers"], c["heads"])
    load_from_vt(tm, m.state_dict())
    m, tm = m.to(dev), tm.to(dev)
    opt = vt.optim.AdamW(m.parameters(), lr=3e-4)
    topt = torch.optim.AdamW(tm.parameters(), lr=3e-4)
    bt = np.random.default_rng(0).integers(0, c["vocab"], size=(c["batch"], c["seq"] + 1))
    x, y = vt.tensor(bt[:, :-1], device=dev), vt.tensor(bt[:, 1:], device=dev)
    tx, ty = torch.from_numpy(bt[:, :-1]).to(dev), torch.from_numpy(bt[:, 1:]).to(dev)
    F, TF, V = vt.nn.functional, torch.nn.functional, c["vocab"]

    def vt_step():
        loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def torch_step():
        loss = TF.cross_entropy(tm(tx).reshape(-1, V), ty.reshape(-1))
        topt.zero_grad()
        loss.backward()
        topt.step()
        return loss

    losses = [(float(vt_step().item()), float(torch_step().item())) for _ in range(5)]
    return vt_step, torch_step, losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)  # host cost, not BLAS threading: both sides single-threaded
    vsync = vt.cuda.synchronize if args.device == "cuda" else (lambda: None)
    tsync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    print(f"# host cost per call, best of 5 alternating rounds; device={args.device}, torch {torch.__version__}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}, cpus={os.cpu_count()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'':36s} {'vibetensor':>12s} {'torch':>12s} {'vt/torch':>9s}")
    for name, f_vt, f_t in op_pairs(args.device):
        v, t = best_of(f_vt, args.iters, vsync), best_of(f_t, args.iters, tsync)
        print(f"{name:36s} {v * 1e6:9.2f} us {t * 1e6:9.2f} us {v / t:9.2f}", flush=True)
    vt_step, torch_step, losses = gpt_steps(args.device)
    v, t = best_of(vt_step, args.steps, vsync), best_of(torch_step, args.steps, tsync)
    print(f"{'tiny GPT train step (AdamW)':36s} {v * 1e3:9.3f} ms {t * 1e3:9.3f} ms {v / t:9.2f}")
    print(f"# first 5 losses, same weights: vt {[round(a, 5) for a, _ in losses]}, "
          f"torch {[round(b, 5) for _, b in losses]}")


if __name__ == "__main__":
    main()
