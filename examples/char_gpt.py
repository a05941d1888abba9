"""Character-level GPT (dim 256, 6 layers, 8 heads, context 128 with --config full).

Trains on any text file (--text); by default on the Python standard library's own sources, which
are always present. Reports train and validation loss (nats per character); --generate N prints
N sampled characters at the end.

    python examples/char_gpt.py --generate 300
    vt-launch -n 2 examples/char_gpt.py --config full --text input.txt
"""
from __future__ import annotations

import time

import numpy as np

import common
import data as datasets
from gpt import GPT, GPTConfig, cosine_lr, lm_loss

import vibetensor as vt
import vibetensor.nn.functional as F

CONFIGS = {
    "small": dict(steps=300, batch=32, lr=3e-3, warmup=30, dim=128, layers=2, heads=4, seq=64, text_bytes=1 << 20),
    "full": dict(steps=5000, batch=64, lr=1e-3, warmup=200, dim=256, layers=6, heads=8, seq=128, text_bytes=16 << 20),
}


def load_text(args, cfg):
    if args.text:
        with open(args.text, encoding="utf-8", errors="replace") as f:
            return f.read(), args.text
    return datasets.default_text(cfg["text_bytes"])


class Corpus:
    """Characters -> ids (vocabulary: the sorted distinct characters), 90/10 train/val split."""

    def __init__(self, text: str):
        if len(text) < 1000:
            raise SystemExit(f"the text has {len(text)} characters; give at least a few thousand")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = np.array([self.stoi[c] for c in text], dtype=np.int64)
        n = int(0.9 * len(ids))
        self.train, self.val = ids[:n], ids[n:]

    def batch(self, split: str, rng: np.random.Generator, batch: int, seq: int):
        d = self.train if split == "train" else self.val
        off = rng.integers(0, len(d) - seq - 1, size=batch)
        x = np.stack([d[o:o + seq] for o in off])
        y = np.stack([d[o + 1:o + seq + 1] for o in off])
        return x, y

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


@vt.no_grad()
def evaluate(model, corpus, split, cfg, run, seed: int, batches: int) -> float:
    """Mean loss on `batches` fixed batches (the same ones every time), split over ranks."""
    model.eval()
    total = 0.0
    for i in range(batches):
        x, y = corpus.batch(split, np.random.default_rng([seed, 999, i]), cfg["batch"], cfg["seq"])
        x, y = common.rank_slice(x, run), common.rank_slice(y, run)
        total += lm_loss(model(vt.tensor(x, device=run.device)), vt.tensor(y, device=run.device)).item()
    model.train()
    return common.all_reduce_mean(total / batches, run)


@vt.no_grad()
def generate(model, corpus, prompt: str, n: int, device, seed: int, temperature: float = 0.8) -> str:
    model.eval()
    rng = np.random.default_rng([seed, 4242])
    ids = [corpus.stoi.get(c, 0) for c in prompt] or [0]
    seq = model.config.seq
    for _ in range(n):
        ctx = np.array(ids[-seq:], dtype=np.int64)[None]
        logits = model(vt.tensor(ctx, device=device))[0, -1].float()
        probs = F.softmax(logits / temperature, dim=-1).cpu().numpy().astype(np.float64)
        ids.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    model.train()
    return corpus.decode(ids)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--text", default=None, help="training text (default: the Python standard library sources)")
    p.add_argument("--generate", type=int, default=0, metavar="N", help="print N generated characters at the end")
    p.add_argument("--prompt", default="def ")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=4)
    for k in ("dim", "layers", "heads", "seq"):
        p.add_argument(f"--{k}", type=int, default=None)
    args = p.parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    for k, v in (("steps", args.steps), ("batch", args.batch_size), ("lr", args.lr), ("dim", args.dim),
                 ("layers", args.layers), ("heads", args.heads), ("seq", args.seq)):
        if v is not None:
            cfg[k] = v
    steps, gbatch, lr = cfg["steps"], cfg["batch"], cfg["lr"]
    run = common.setup(args)
    common.local_batch(gbatch, run)
    text, what = load_text(args, cfg)
    corpus = Corpus(text)

    model = GPT(GPTConfig(vocab=len(corpus.chars), seq=cfg["seq"], dim=cfg["dim"], layers=cfg["layers"],
                          heads=cfg["heads"])).to(run.device)
    opt = vt.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    start = common.load_checkpoint(args.resume, model, opt, run) if args.resume else 0
    ddp = common.wrap_ddp(model, run)
    if run.is_main:
        print(f"char_gpt: {len(text):,} characters of {what}, vocabulary {len(corpus.chars)}")
        print(f"char_gpt: {model.num_params():,} parameters (dim {cfg['dim']}, {cfg['layers']} layers, "
              f"{cfg['heads']} heads, context {cfg['seq']}) on {run.device}, {run.world} rank(s), "
              f"global batch {gbatch}, {steps} steps")

    prog = common.Progress(run, steps, start)
    first_loss = loss_v = val = None
    train_time, t0 = 0.0, time.perf_counter()
    end = common.last_step(args, steps)
    for step in range(start, end):
        ts = time.perf_counter()
        x, y = corpus.batch("train", common.batch_rng(args.seed, step, 0), gbatch, cfg["seq"])
        x, y = common.rank_slice(x, run), common.rank_slice(y, run)
        common.seed_step(args.seed, step, run.rank)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(cfg["warmup"], steps // 10 + 1))
        with vt.observe.span("step"):
            loss = lm_loss(ddp(vt.tensor(x, device=run.device)), vt.tensor(y, device=run.device))
            opt.zero_grad()
            loss.backward()
            vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        loss_v = common.all_reduce_mean(loss.item(), run)
        train_time += time.perf_counter() - ts
        first_loss = loss_v if first_loss is None else first_loss
        prog.update(step + 1, loss=loss_v, tok_s=(step + 1 - start) * gbatch * cfg["seq"] / max(1e-9, train_time))
        if args.save and args.save_every and (step + 1) % args.save_every == 0:
            common.save_checkpoint(args.save, model, opt, step + 1, run)
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < steps:
            val = evaluate(model, corpus, "val", cfg, run, args.seed, args.eval_batches)
            if run.is_main:
                common.log(prog, f"step {step + 1}: train loss {loss_v:.4f}, val loss {val:.4f}")
    prog.close()
    wall = time.perf_counter() - t0
    train_eval = evaluate(model, corpus, "train", cfg, run, args.seed, args.eval_batches)
    val = evaluate(model, corpus, "val", cfg, run, args.seed, args.eval_batches)
    if args.save:
        common.save_checkpoint(args.save, model, opt, end, run)
    common.finish_trace(run)
    ms = 1000 * train_time / max(1, end - start)
    sample = None
    if args.generate and run.is_main:
        sample = generate(model, corpus, args.prompt, args.generate, run.device, args.seed)
    if run.is_main:
        print(f"done: {end} steps in {wall:.1f}s ({ms:.1f} ms/step), loss {first_loss:.4f} -> {loss_v:.4f}, "
              f"train loss {train_eval:.4f}, val loss {val:.4f} (uniform: {np.log(len(corpus.chars)):.4f})")
        if sample is not None:
            print("---- sample ----")
            print(sample)
            print("----------------")
    result = {"example": "char_gpt", "steps": end, "loss": loss_v, "first_loss": first_loss,
              "train_loss": train_eval, "val_loss": val, "ms_per_step": ms, "wall_s": wall,
              "world": run.world, "device": str(run.device), "vocab": len(corpus.chars)}
    common.finish(run, result)
    return result


if __name__ == "__main__":
    main()
