"""One GPT training step (embeddings, pre-LN causal attention blocks, 4x GELU MLP, final LN, head,
cross-entropy, AdamW lr 3e-4) in vibetensor and in PyTorch eager, same initial weights, one GPU,
one process. Prints ms/step, tokens/s, peak memory and vt/PyTorch ratios, and the loss after N
steps on both sides.

    python benchmarks/train_gpt.py [--configs reverse,medium,gpt2-small] [--steps 50] [--modes fp32,bf16,graph]
                                   [--rounds 5] [--compile] [--device cuda|cpu]

Both models are built and warmed up, then timed in ``--rounds`` alternating blocks of steps (vt then torch,
torch then vt, ...), so that a slow spell of a shared host falls on both sides rather than on one: the
ms/step columns are each side's median block and the ratio is the median of the blocks' ratios, with their
spread beside it. Each side still runs its steps in order, so the losses are those of sequential runs.
``--rounds 1`` times all of vt's steps, then all of torch's.

``--compile`` adds, for information, PyTorch with ``torch.compile(model)`` (default mode; compile time
is spent in the warm-up steps and not counted) next to each eager mode. ``--device cpu`` runs the eager
modes on the CPU (a check of this script, not a speed figure).
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
from gpt import GPT, GPTConfig  # noqa: E402

CONFIGS = {  # dim, layers, heads, batch, seq, vocab
    "reverse": (128, 2, 4, 64, 64, 36),
    "medium": (512, 8, 8, 32, 256, 256),
    "gpt2-small": (768, 12, 12, 16, 512, 50304),
}


def data(cfg, steps, seed=0):
    dim, layers, heads, batch, seq, vocab = cfg
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=(batch, seq + 1)) for _ in range(min(steps, 8))]


def vt_side(cfg, batches, mode, state=None, device="cuda"):
    """vibetensor's step, warmed up: (fn(i) -> loss of step i, synchronize, peak bytes)."""
    dim, layers, heads, batch, seq, vocab = cfg
    cuda = device == "cuda"
    vt.manual_seed(0)
    m = GPT(GPTConfig(vocab=vocab, seq=seq, dim=dim, layers=layers, heads=heads)).to(device)
    if state is not None:
        m.load_state_dict(state)
    opt = vt.optim.AdamW(m.parameters(), lr=3e-4)
    F = vt.nn.functional
    xs = [vt.tensor(b[:, :-1], device=device) for b in batches]
    ys = [vt.tensor(b[:, 1:], device=device) for b in batches]
    amp = vt.bfloat16 if mode in ("bf16", "graph-bf16") else None
    graphed = mode.startswith("graph")

    def step(x, y):
        if amp is not None:
            with vt.autocast(device, dtype=amp):
                logits = m(x)
        else:
            logits = m(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=not graphed)  # as torch's side; a captured graph needs fixed grad buffers
        loss.backward()
        opt.step()
        return loss

    sync = vt.cuda.synchronize if cuda else (lambda: None)
    sync()
    if cuda:
        vt.cuda.reset_peak_memory_stats()
    if graphed:
        if not cuda:
            raise ValueError(f"mode {mode!r} captures a CUDA graph: it needs --device cuda")
        sx, sy = xs[0].clone(), ys[0].clone()
        g = vt.cuda.make_graphed_step(step, sx, sy, warmup=3)
        fn = lambda i: g(xs[i % len(xs)], ys[i % len(ys)])  # noqa: E731
    else:
        fn = lambda i: step(xs[i % len(xs)], ys[i % len(ys)])  # noqa: E731
    for i in range(3):
        fn(i)
    sync()
    return fn, sync, (lambda: vt.cuda.max_memory_allocated() if cuda else 0)


def torch_side(cfg, batches, mode, vt_state, compiled=False, device="cuda"):
    """PyTorch eager's step (or torch.compile's), warmed up: (fn(i) -> loss, synchronize, peak bytes)."""
    import torch
    from reference.gpt_torch import GPT as TGPT, load_from_vt
    dim, layers, heads, batch, seq, vocab = cfg
    m = TGPT(vocab, seq, dim, layers, heads)
    load_from_vt(m, vt_state)
    m = m.to(device)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4)
    if compiled:
        m = torch.compile(m)  # after the optimizer took the parameters: compile wraps, it does not copy
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    xs = [torch.from_numpy(b[:, :-1]).to(device) for b in batches]
    ys = [torch.from_numpy(b[:, 1:]).to(device) for b in batches]
    amp = torch.bfloat16 if mode in ("bf16", "graph-bf16") else None

    def step(x, y):
        with torch.autocast(device, dtype=amp, enabled=amp is not None):
            logits = m(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for i in range(3):
        step(xs[i % len(xs)], ys[i % len(ys)])
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    fn = lambda i: step(xs[i % len(xs)], ys[i % len(ys)])  # noqa: E731
    return fn, sync, (lambda: torch.cuda.max_memory_allocated() if cuda else 0)


def interleaved(sides, steps, rounds):
    """Time each side's steps 0..steps-1 in ``rounds`` blocks, alternating which side goes first. Returns
    per side the median block's seconds per step and the last loss (a float), and the blocks' ratios
    side 0 / side 1."""
    rounds = max(1, min(rounds, steps))
    bounds = np.linspace(0, steps, rounds + 1).round().astype(int)
    per_step = [[] for _ in sides]
    losses = [None] * len(sides)
    for r in range(rounds):
        lo, hi = int(bounds[r]), int(bounds[r + 1])
        for k in (range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))):
            fn, sync, _ = sides[k]
            sync()
            t0 = time.perf_counter()
            for i in range(lo, hi):
                losses[k] = fn(i)  # only the last loss is kept, on both sides
            sync()
            per_step[k].append((time.perf_counter() - t0) / (hi - lo))
    ratios = [a / b for a, b in zip(per_step[0], per_step[1])] if len(sides) == 2 else []
    return [float(np.median(t)) for t in per_step], [float(x.item()) for x in losses], ratios


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="reverse,medium,gpt2-small")
    ap.add_argument("--modes", default="fp32,bf16,graph")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5, help="alternating timed blocks per side (1: one block each)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model), for information")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args(argv)
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise SystemExit(f"unknown config {name!r}; known: {', '.join(CONFIGS)}")
    if args.steps < 1 or args.rounds < 1:
        raise SystemExit(f"--steps ({args.steps}) and --rounds ({args.rounds}) must be at least 1")
    dev = args.device
    if dev == "cuda" and not vt.cuda.is_available():
        raise SystemExit("train_gpt.py needs a CUDA GPU (or --device cpu, to check the script)")
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vt.backends.cuda.matmul.allow_tf32 = False
    where = vt.cuda.get_device_name(0) if dev == "cuda" else "CPU"
    print(f"{where}; torch {torch.__version__}; {args.steps} steps in {min(args.rounds, args.steps)} alternating "
          f"blocks a side")
    hdr = f"{'config':11} {'mode':10} {'vt ms':>8} {'torch ms':>9} {'ratio':>6} {'spread':>11} {'vt tok/s':>10} " \
          f"{'vt MiB':>8} {'torch MiB':>9} {'mem ratio':>9} {'vt loss':>9} {'torch loss':>10} {'rel diff':>9}"
    rows, compiled = [], []
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        batches = data(cfg, args.steps)
        vt.manual_seed(0)
        init = GPT(GPTConfig(vocab=cfg[5], seq=cfg[4], dim=cfg[0], layers=cfg[1], heads=cfg[2])).state_dict()
        tokens = cfg[3] * cfg[4]
        for mode in args.modes.split(","):
            tmode = "fp32" if mode == "graph" else ("bf16" if mode == "graph-bf16" else mode)
            try:
                ours = vt_side(cfg, batches, mode, init, dev)
            except Exception as e:  # report and keep going: one failing mode must not hide the rest
                print(f"{name} {mode}: vibetensor failed: {type(e).__name__}: {e}")
                continue
            theirs = torch_side(cfg, batches, tmode, init, device=dev)
            try:
                (v_dt, t_dt), (v_loss, t_loss), ratios = interleaved([ours, theirs], args.steps, args.rounds)
            except Exception as e:  # as above: say which side broke (vt's steps run first in round 0)
                print(f"{name} {mode}: timed steps failed: {type(e).__name__}: {e}")
                continue
            v_mem, t_mem = ours[2](), theirs[2]()
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
            rows.append((name, mode, v_dt * 1e3, t_dt * 1e3, float(np.median(ratios)), spread, tokens / v_dt,
                         v_mem / 2 ** 20, t_mem / 2 ** 20, v_mem / max(t_mem, 1), v_loss, t_loss,
                         abs(v_loss - t_loss) / abs(t_loss)))
            print(hdr if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
            r = rows[-1]
            print(f"{r[0]:11} {r[1]:10} {r[2]:8.2f} {r[3]:9.2f} {r[4]:6.2f} {r[5]:>11} {r[6]:10.0f} {r[7]:8.0f} "
                  f"{r[8]:9.0f} {r[9]:9.2f} {r[10]:9.4f} {r[11]:10.4f} {r[12]:9.1e}", flush=True)
            del ours, theirs
            if args.compile and not mode.startswith("graph"):
                try:
                    comp = torch_side(cfg, batches, tmode, init, compiled=True, device=dev)
                    (c_dt,), (c_loss,), _ = interleaved([comp], args.steps, 1)
                    compiled.append((name, mode, v_dt * 1e3, c_dt * 1e3, v_dt / c_dt, c_loss))
                except Exception as e:  # information only: a compile failure must not end the run
                    print(f"{name} {mode}: torch.compile failed: {type(e).__name__}: {e}")
            if dev == "cuda":
                vt.cuda.empty_cache()
                torch.cuda.empty_cache()
    if compiled:
        print(f"\ntorch.compile(model), for information:\n{'config':11} {'mode':10} {'vt ms':>8} "
              f"{'compiled ms':>11} {'vt/compiled':>11} {'compiled loss':>13}")
        for r in compiled:
            print(f"{r[0]:11} {r[1]:10} {r[2]:8.2f} {r[3]:11.2f} {r[4]:11.2f} {r[5]:13.4f}")
    return rows


if __name__ == "__main__":
    main()
