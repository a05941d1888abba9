"""One GPT training step (embeddings, pre-LN causal attention blocks, 4x GELU MLP, final LN, head,
cross-entropy, AdamW lr 3e-4) in vibetensor and in PyTorch eager, same initial weights, one GPU,
one process. Prints ms/step, tokens/s, peak memory and vt/PyTorch ratios, and the loss after N
steps on both sides.

    python benchmarks/train_gpt.py [--configs reverse,medium,gpt2-small] [--steps 50] [--modes fp32,bf16,graph]
                                   [--compile]

``--compile`` adds, for information, PyTorch with ``torch.compile(model)`` (default mode; compile time
is spent in the warm-up steps and not counted) next to each eager mode.
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


def run_vt(cfg, batches, steps, mode, state=None):
    dim, layers, heads, batch, seq, vocab = cfg
    vt.manual_seed(0)
    m = GPT(GPTConfig(vocab=vocab, seq=seq, dim=dim, layers=layers, heads=heads)).to("cuda")
    if state is not None:
        m.load_state_dict(state)
    opt = vt.optim.AdamW(m.parameters(), lr=3e-4)
    F = vt.nn.functional
    xs = [vt.tensor(b[:, :-1], device="cuda") for b in batches]
    ys = [vt.tensor(b[:, 1:], device="cuda") for b in batches]
    amp = vt.bfloat16 if mode in ("bf16", "graph-bf16") else None
    graphed = mode.startswith("graph")

    def step(x, y):
        if amp is not None:
            with vt.autocast("cuda", dtype=amp):
                logits = m(x)
        else:
            logits = m(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=not graphed)  # as torch's side; a captured graph needs fixed grad buffers
        loss.backward()
        opt.step()
        return loss

    vt.cuda.synchronize()
    vt.cuda.reset_peak_memory_stats()
    if mode.startswith("graph"):
        sx, sy = xs[0].clone(), ys[0].clone()
        g = vt.cuda.make_graphed_step(step, sx, sy, warmup=3)
        fn = lambda i: g(xs[i % len(xs)], ys[i % len(ys)])  # noqa: E731
    else:
        fn = lambda i: step(xs[i % len(xs)], ys[i % len(ys)])  # noqa: E731
    for i in range(3):
        fn(i)
    vt.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        loss = fn(i)  # only the last loss is kept, as on the torch side
    vt.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return dt, vt.cuda.max_memory_allocated(), float(loss.item())


def run_torch(cfg, batches, steps, mode, vt_state, compiled=False, device="cuda"):
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
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(xs[i % len(xs)], ys[i % len(ys)])
    sync()
    dt = (time.perf_counter() - t0) / steps
    return dt, (torch.cuda.max_memory_allocated() if cuda else 0), float(loss.item())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="reverse,medium,gpt2-small")
    ap.add_argument("--modes", default="fp32,bf16,graph")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model), for information")
    args = ap.parse_args()
    if not vt.cuda.is_available():
        raise SystemExit("train_gpt.py needs a CUDA GPU")
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vt.backends.cuda.matmul.allow_tf32 = False
    print(f"GPU: {vt.cuda.get_device_name(0)}; torch {torch.__version__}")
    hdr = f"{'config':11} {'mode':10} {'vt ms':>8} {'torch ms':>9} {'ratio':>6} {'vt tok/s':>10} " \
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
                v_dt, v_mem, v_loss = run_vt(cfg, batches, args.steps, mode, init)
            except Exception as e:  # report and keep going: one failing mode must not hide the rest
                print(f"{name} {mode}: vibetensor failed: {type(e).__name__}: {e}")
                continue
            t_dt, t_mem, t_loss = run_torch(cfg, batches, args.steps, tmode, init)
            rows.append((name, mode, v_dt * 1e3, t_dt * 1e3, v_dt / t_dt, tokens / v_dt, v_mem / 2 ** 20,
                         t_mem / 2 ** 20, v_mem / max(t_mem, 1), v_loss, t_loss, abs(v_loss - t_loss) / abs(t_loss)))
            print(hdr if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
            r = rows[-1]
            print(f"{r[0]:11} {r[1]:10} {r[2]:8.2f} {r[3]:9.2f} {r[4]:6.2f} {r[5]:10.0f} {r[6]:8.0f} {r[7]:9.0f} "
                  f"{r[8]:9.2f} {r[9]:9.4f} {r[10]:10.4f} {r[11]:9.1e}", flush=True)
            if args.compile and not mode.startswith("graph"):
                try:
                    c_dt, _, c_loss = run_torch(cfg, batches, args.steps, tmode, init, compiled=True)
                    compiled.append((name, mode, v_dt * 1e3, c_dt * 1e3, v_dt / c_dt, c_loss))
                except Exception as e:  # information only: a compile failure must not end the run
                    print(f"{name} {mode}: torch.compile failed: {type(e).__name__}: {e}")
            vt.cuda.empty_cache()
            torch.cuda.empty_cache()
    if compiled:
        print(f"\ntorch.compile(model), for information:\n{'config':11} {'mode':10} {'vt ms':>8} "
              f"{'compiled ms':>11} {'vt/compiled':>11} {'compiled loss':>13}")
        for r in compiled:
            print(f"{r[0]:11} {r[1]:10} {r[2]:8.2f} {r[3]:11.2f} {r[4]:11.2f} {r[5]:13.4f}")


if __name__ == "__main__":
    main()
