"""Sequence reversal with a causal GPT: <BOS> a1..an <SEP> an..a1 <EOS>.

Alphabet of 32 letters + 4 special tokens, n in 1..16, sequence length 64, dim 128, 4 heads,
2 layers, global batch 64, loss only after <SEP>. Reports exact-match accuracy of greedy decoding
on 256 held-out prompts (16 per length) and stops early once it reaches --target-acc.

    python examples/minigpt_reverse.py                     # CPU or GPU, one device
    vt-launch -n 2 examples/minigpt_reverse.py             # data parallel over 2 ranks
"""
from __future__ import annotations

import time

import numpy as np

import common
from gpt import GPT, GPTConfig, cosine_lr

import vibetensor as vt
import vibetensor.nn.functional as F

PAD, BOS, SEP, EOS = 0, 1, 2, 3
LETTERS, MAX_N, SEQ = 32, 16, 64
VOCAB = LETTERS + 4
# The model sizes are the task's spec. lr/steps tuned on CPU: at lr 2e-3 seed 0 (vt, 2 ranks) reaches
# 99.6% greedy exact match at step 1400 (3e-3: 100% at 1600; 6e-3 slower); seeds 1-4 (the torch twin,
# same initial weights) pass 99% at steps 1100, 1700, 1700, 1300. The budget is a cap: the run stops
# at --target-acc.
CONFIGS = {
    "small": dict(steps=2000, batch=64, lr=2e-3, warmup=100, dim=128, layers=2, heads=4),
    "full": dict(steps=4000, batch=64, lr=2e-3, warmup=100, dim=128, layers=2, heads=4),
}


def make_batch(rng: np.random.Generator, batch: int):
    """Token ids (batch, SEQ+1), PAD after <EOS>, and the position of each <SEP>."""
    seqs = np.full((batch, SEQ + 1), PAD, dtype=np.int64)
    sep = np.empty(batch, dtype=np.int64)
    ns = rng.integers(1, MAX_N + 1, size=batch)
    for i, n in enumerate(ns):
        a = rng.integers(4, 4 + LETTERS, size=n)
        s = np.concatenate([[BOS], a, [SEP], a[::-1], [EOS]])
        seqs[i, :len(s)] = s
        sep[i] = n + 1
    return seqs, sep


def inputs_targets(seqs, sep, trim: bool = True):
    """Inputs and next-token targets; targets are -100 on the prompt and on padding.

    ``trim`` drops the all-padding tail shared by the whole batch: with causal attention and no loss
    there, the loss and every gradient are exactly those of the full length-64 batch, for less work."""
    x = seqs[:, :-1]
    y = seqs[:, 1:].copy()
    pos = np.arange(SEQ)[None, :]
    y[pos < sep[:, None]] = -100
    y[y == PAD] = -100
    if trim:
        L = int(2 * sep.max())  # the last target (<EOS>) sits at 2n+1 = 2*sep - 1
        x, y = x[:, :L], y[:, :L]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def loss_fn(logits, y, run, global_count: int):
    """Mean cross-entropy over the *global* batch's target tokens. Each rank sums its tokens and
    divides by the global count times 1/world; DDP's gradient average then gives exactly the
    single-process gradient even though ranks hold different numbers of target tokens."""
    b, t, v = logits.shape
    s = F.cross_entropy(logits.reshape(b * t, v), y.reshape(b * t), ignore_index=-100, reduction="sum")
    return s * (run.world / global_count)


def held_out(seed: int, per_len: int = 16):
    """The held-out prompts (a stream never used for training): letters (per_len*16 rows) and n."""
    rng = np.random.default_rng([seed, 10 ** 6])
    ns = np.repeat(np.arange(1, MAX_N + 1), per_len)
    a = [rng.integers(4, 4 + LETTERS, size=n) for n in ns]
    return a, ns


@vt.no_grad()
def greedy_decode(model, device, a, ns):
    """Greedy continuations of prompts <BOS> a <SEP>, all decoded together, one forward per output
    token; returns the (len(ns), 2*MAX_N+3) token array. Rows are right-padded: causal attention
    makes whatever follows a row's cursor irrelevant to it."""
    ns = np.asarray(ns)
    ctx = np.full((len(ns), 2 * MAX_N + 3), PAD, dtype=np.int64)
    for i, (n, ai) in enumerate(zip(ns, a)):
        ctx[i, 0], ctx[i, 1:n + 1], ctx[i, n + 1] = BOS, ai, SEP
    for j in range(int(ns.max()) + 1):
        rows = np.nonzero(ns >= j)[0]            # rows with output token j still to produce
        cur = ns[rows] + 1 + j                   # position whose logits give token j
        L = int(cur.max()) + 1
        logits = model(vt.tensor(ctx[rows, :L], device=device))
        pred = logits.argmax(dim=-1).cpu().numpy()
        ctx[rows, cur + 1] = pred[np.arange(len(rows)), cur]
    return ctx


@vt.no_grad()
def greedy_accuracy(model, device, seed: int, per_len: int = 16) -> float:
    """Exact match of greedy decoding (the reversed letters, then <EOS>) on the held-out prompts."""
    model.eval()
    a, ns = held_out(seed, per_len)
    ctx = greedy_decode(model, device, a, ns)
    ok = [np.array_equal(ctx[i, n + 2:2 * n + 3], np.concatenate([ai[::-1], [EOS]]))
          for i, (n, ai) in enumerate(zip(ns, a))]
    model.train()
    return float(np.mean(ok))


@vt.no_grad()
def teacher_forced_accuracy(model, device, seed: int, per_len: int = 16) -> float:
    """One forward pass: a prompt decodes exactly iff every output token is the argmax given the
    correct prefix, so this equals greedy_accuracy (up to float ties) at a 17th of the cost."""
    model.eval()
    a, ns = held_out(seed, per_len)
    seqs = np.full((len(ns), 2 * MAX_N + 3), PAD, dtype=np.int64)
    for i, (n, ai) in enumerate(zip(ns, a)):
        seqs[i, :2 * n + 3] = np.concatenate([[BOS], ai, [SEP], ai[::-1], [EOS]])
    pred = model(vt.tensor(seqs[:, :-1], device=device)).argmax(dim=-1).cpu().numpy()
    ok = [(pred[i, n + 1:2 * n + 2] == seqs[i, n + 2:2 * n + 3]).all() for i, n in enumerate(ns)]
    model.train()
    return float(np.mean(ok))


def build(args):
    cfg = dict(CONFIGS[args.config])
    for k in ("steps", "lr"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.batch_size is not None:
        cfg["batch"] = args.batch_size
    for k in ("dim", "layers", "heads"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    return cfg


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--eval-every", type=int, default=100, help="held-out accuracy every N steps (0: only at the end)")
    p.add_argument("--target-acc", type=float, default=0.99,
                   help="stop early once held-out exact-match accuracy reaches this (> 1: never)")
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    args = p.parse_args(argv)
    cfg = build(args)
    steps, gbatch, lr = cfg["steps"], cfg["batch"], cfg["lr"]
    run = common.setup(args)
    common.local_batch(gbatch, run)

    model = GPT(GPTConfig(vocab=VOCAB, seq=SEQ, dim=cfg["dim"], layers=cfg["layers"], heads=cfg["heads"]))
    model.to(run.device)
    opt = vt.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    start = common.load_checkpoint(args.resume, model, opt, run) if args.resume else 0
    ddp = common.wrap_ddp(model, run)
    if run.is_main:
        print(f"minigpt_reverse: {model.num_params():,} parameters on {run.device}, {run.world} rank(s), "
              f"global batch {gbatch}, up to {steps} steps, target exact match {args.target_acc}")

    prog = common.Progress(run, steps, start)
    acc, first_loss, loss_v, done, stopped = None, None, None, start, False
    t0, c0 = time.perf_counter(), time.process_time()
    train_time = 0.0
    end = common.last_step(args, steps)
    for step in range(start, end):
        ts = time.perf_counter()
        seqs, sep = make_batch(common.batch_rng(args.seed, step, 0), gbatch)
        x, y = inputs_targets(seqs, sep)
        count = int((y != -100).sum())
        x, y = common.rank_slice(x, run), common.rank_slice(y, run)
        common.seed_step(args.seed, step, run.rank)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(cfg["warmup"], steps // 10 + 1))
        with vt.observe.span("step"):
            loss = loss_fn(ddp(vt.tensor(x, device=run.device)), vt.tensor(y, device=run.device), run, count)
            opt.zero_grad()
            loss.backward()
            vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        loss_v = common.all_reduce_mean(loss.item(), run)  # the global-batch mean
        train_time += time.perf_counter() - ts
        done = step + 1
        first_loss = loss_v if first_loss is None else first_loss
        prog.update(done, loss=loss_v, tok_s=(done - start) * gbatch * SEQ / max(1e-9, train_time))
        if args.save and args.save_every and done % args.save_every == 0:
            common.save_checkpoint(args.save, model, opt, done, run)
        if args.eval_every and done % args.eval_every == 0 and done < steps:
            # cheap equivalent check first; the real greedy decode only when it can pass
            tf = teacher_forced_accuracy(model, run.device, args.seed)
            if run.is_main:
                common.log(prog, f"step {done}: loss {loss_v:.4f}, held-out exact match (teacher-forced) {tf:.3f}")
            if tf >= args.target_acc:
                acc = greedy_accuracy(model, run.device, args.seed)
                if acc >= args.target_acc:
                    stopped = True
                    break
    prog.close()
    wall = time.perf_counter() - t0
    # CPU seconds this process used per step (includes evals): on a busy machine the wall clock
    # mostly measures other processes; this is what a dedicated core would need
    cpu_ms = common.all_reduce_mean(1000 * (time.process_time() - c0) / max(1, done - start), run)
    if not stopped:
        acc = greedy_accuracy(model, run.device, args.seed)
    if args.save:
        common.save_checkpoint(args.save, model, opt, done, run)
    common.finish_trace(run)
    ms = 1000 * train_time / max(1, done - start)
    if run.is_main:
        print(f"done: {done} steps in {wall:.1f}s ({ms:.0f} ms/step, {cpu_ms:.0f} CPU ms/step per rank), loss {first_loss:.4f} -> {loss_v:.4f}, "
              f"held-out greedy exact-match accuracy {acc:.4f}")
    result = {"example": "minigpt_reverse", "steps": done, "loss": loss_v, "first_loss": first_loss,
              "accuracy": acc, "ms_per_step": ms, "cpu_ms_per_step": cpu_ms, "wall_s": wall, "world": run.world, "device": str(run.device)}
    common.finish(run, result)
    return result


if __name__ == "__main__":
    main()
