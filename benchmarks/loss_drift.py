"""How far float32 losses drift apart over N AdamW steps of train_gpt's GPT, and whose drift it is.

From the same weights and batches as train_gpt, in its order (3 warm-up steps on batches 0-2, then
step i on batch i % 8), 3 + N steps each of: vibetensor float32; PyTorch float32
(SDPA's default kernel); PyTorch float32 with SDPA's math kernel (another exact-in-float32 ordering of
the same sums); PyTorch float64 (the reference). Prints the loss at a few steps and each float32 run's
relative difference from float64 and from PyTorch float32. When two float32 orderings within PyTorch
drift apart as far as vibetensor drifts from PyTorch, the drift is the training's sensitivity to
rounding, not an error in either side.

    python benchmarks/loss_drift.py [--configs medium] [--steps 50] [--device cuda]

Step s below counts the timed steps as train_gpt does: train_gpt's "loss after N steps" is step N here.
"""
from __future__ import annotations

import argparse

import numpy as np

import vibetensor as vt
from train_gpt import CONFIGS, GPT, GPTConfig, data


WARMUP = 3  # train_gpt's untimed first steps


def order(steps, n):
    return [i % n for i in range(WARMUP)] + [i % n for i in range(steps)]  # as train_gpt's xs[i % len(xs)]


def vt_losses(cfg, batches, steps, state, device):
    dim, layers, heads, batch, seq, vocab = cfg
    m = GPT(GPTConfig(vocab=vocab, seq=seq, dim=dim, layers=layers, heads=heads)).to(device)
    m.load_state_dict(state)
    opt = vt.optim.AdamW(m.parameters(), lr=3e-4)
    xs = [vt.tensor(b[:, :-1], device=device) for b in batches]
    ys = [vt.tensor(b[:, 1:], device=device) for b in batches]
    out = []
    for i in order(steps, len(xs)):
        loss = vt.nn.functional.cross_entropy(m(xs[i]).reshape(-1, vocab), ys[i].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.append(loss.detach())
    return [float(v.item()) for v in out[WARMUP:]]


def torch_losses(cfg, batches, steps, state, device, dtype, math_sdpa=False):
    import contextlib

    import torch
    from reference.gpt_torch import GPT as TGPT, load_from_vt
    dim, layers, heads, batch, seq, vocab = cfg
    m = TGPT(vocab, seq, dim, layers, heads)
    load_from_vt(m, state)
    m = m.to(device=device, dtype=dtype)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4)
    xs = [torch.from_numpy(b[:, :-1]).to(device) for b in batches]
    ys = [torch.from_numpy(b[:, 1:]).to(device) for b in batches]
    ctx = contextlib.nullcontext()
    if math_sdpa:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx = sdpa_kernel(SDPBackend.MATH)
    out = []
    with ctx:
        for i in order(steps, len(xs)):
            loss = torch.nn.functional.cross_entropy(m(xs[i]).reshape(-1, vocab), ys[i].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            out.append(loss.detach())
    return [float(v.item()) for v in out[WARMUP:]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="medium")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--device", default="cuda" if vt.cuda.is_available() else "cpu")
    args = ap.parse_args()
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vt.backends.cuda.matmul.allow_tf32 = False
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        batches = data(cfg, args.steps)
        vt.manual_seed(0)
        init = GPT(GPTConfig(vocab=cfg[5], seq=cfg[4], dim=cfg[0], layers=cfg[1], heads=cfg[2])).state_dict()
        runs = {
            "vt float32": vt_losses(cfg, batches, args.steps, init, args.device),
            "torch float32": torch_losses(cfg, batches, args.steps, init, args.device, torch.float32),
            "torch float32 math sdpa": torch_losses(cfg, batches, args.steps, init, args.device, torch.float32, True),
            "torch float64": torch_losses(cfg, batches, args.steps, init, args.device, torch.float64),
        }
        ref, t32 = np.array(runs["torch float64"]), np.array(runs["torch float32"])
        marks = sorted({1, *range(10, args.steps - 4, 10), *range(max(1, args.steps - 4), args.steps + 1)})
        print(f"\n{name}, {args.device}, {args.steps} steps: loss at step / relative difference")
        print(f"{'run':24} " + " ".join(f"{s:>10}" for s in marks))
        for run, losses in runs.items():
            a = np.array(losses)
            print(f"{run:24} " + " ".join(f"{a[s - 1]:10.6f}" for s in marks))
            if run != "torch float64":
                print(f"{'  vs float64':24} " + " ".join(f"{abs(a[s - 1] - ref[s - 1]) / ref[s - 1]:10.1e}"
                                                      for s in marks))
            if run not in ("torch float32", "torch float64"):
                print(f"{'  vs torch float32':24} " + " ".join(f"{abs(a[s - 1] - t32[s - 1]) / t32[s - 1]:10.1e}"
                                                           for s in marks))


if __name__ == "__main__":
    main()
