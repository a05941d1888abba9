"""Sequence reversal with a causal GPT: <BOS> a1..an <SEP> an..a1 <EOS>.

Alphabet of 32 letters + 4 special tokens, n in 1..16, sequence length 64, loss only after <SEP>.
Reports exact-match accuracy of greedy decoding on held-out prompts.

    python examples/minigpt_reverse.py                     # CPU or GPU, one device
    vt-launch -n 2 examples/minigpt_reverse.py             # data parallel over 2 ranks
"""
from __future__ import annotations

import time

import numpy as np

import common
from gpt import GPT, GPTConfig, cosine_lr, lm_loss

import vibetensor as vt

PAD, BOS, SEP, EOS = 0, 1, 2, 3
LETTERS, MAX_N, SEQ = 32, 16, 64
VOCAB = LETTERS + 4
CONFIGS = {  # steps, batch, lr, dim, layers, heads
    "small": dict(steps=600, batch=64, lr=2e-3, dim=128, layers=2, heads=4),
    "full": dict(steps=3000, batch=64, lr=1e-3, dim=128, layers=2, heads=4),
}


def make_batch(rng: np.random.Generator, batch: int):
    """Token ids (batch, SEQ+1) and the loss mask position of each <SEP>."""
    seqs = np.full((batch, SEQ + 1), PAD, dtype=np.int64)
    sep = np.empty(batch, dtype=np.int64)
    for i in range(batch):
        n = int(rng.integers(1, MAX_N + 1))
        a = rng.integers(4, 4 + LETTERS, size=n)
        s = np.concatenate([[BOS], a, [SEP], a[::-1], [EOS]])
        seqs[i, :len(s)] = s
        sep[i] = n + 1
    return seqs, sep


def inputs_targets(seqs, sep):
    x = seqs[:, :-1]
    y = seqs[:, 1:].copy()
    pos = np.arange(SEQ)[None, :]
    y[pos < sep[:, None]] = -100           # no loss on the prompt
    y[(y == PAD)] = -100                   # nor on padding
    return x, y


@vt.no_grad()
def greedy_accuracy(model, device, seed: int, per_len: int = 16) -> float:
    model.eval()
    rng = np.random.default_rng([seed, 10 ** 6])  # held-out stream, never used for training
    correct = total = 0
    for n in range(1, MAX_N + 1):
        a = rng.integers(4, 4 + LETTERS, size=(per_len, n))
        ctx = np.concatenate([np.full((per_len, 1), BOS), a, np.full((per_len, 1), SEP)], axis=1)
        for _ in range(n + 1):
            logits = model(vt.tensor(ctx, device=device))
            nxt = logits[:, -1].argmax(dim=-1).cpu().numpy()
            ctx = np.concatenate([ctx, nxt[:, None]], axis=1)
        want = np.concatenate([a[:, ::-1], np.full((per_len, 1), EOS)], axis=1)
        correct += int((ctx[:, n + 2:] == want).all(axis=1).sum())
        total += per_len
    model.train()
    return correct / total


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--target-acc", type=float, default=0.99,
                   help="stop early once held-out exact-match accuracy reaches this")
    args = p.parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    steps = args.steps or cfg["steps"]
    gbatch = args.batch_size or cfg["batch"]
    lr = args.lr or cfg["lr"]
    run = common.setup(args)
    lb = common.local_batch(gbatch, run)

    model = GPT(GPTConfig(vocab=VOCAB, seq=SEQ, dim=cfg["dim"], layers=cfg["layers"], heads=cfg["heads"]))
    model.to(run.device)
    opt = vt.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    start = common.load_checkpoint(args.resume, model, opt, run) if args.resume else 0
    ddp = common.wrap_ddp(model, run)
    if run.is_main:
        print(f"minigpt_reverse: {model.num_params():,} parameters on {run.device}, {run.world} rank(s), "
              f"global batch {gbatch}, {steps} steps")

    prog = common.Progress(run, steps, start)
    acc, t0, first_loss, loss_v = None, time.perf_counter(), None, None
    for step in range(start, steps):
        seqs, sep = make_batch(common.batch_rng(args.seed, step, 0), gbatch)
        seqs, sep = seqs[run.rank * lb:(run.rank + 1) * lb], sep[run.rank * lb:(run.rank + 1) * lb]
        x, y = inputs_targets(seqs, sep)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(100, steps // 10 + 1))
        with vt.observe.span("step"):
            loss = lm_loss(ddp(vt.tensor(x, device=run.device)), vt.tensor(y, device=run.device))
            opt.zero_grad()
            loss.backward()
            vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        loss_v = common.all_reduce_mean(loss.item(), run)
        first_loss = loss_v if first_loss is None else first_loss
        prog.update(step + 1, loss=loss_v, tok_s=(step + 1 - start) * gbatch * SEQ / (time.perf_counter() - t0))
        if args.save and args.save_every and (step + 1) % args.save_every == 0:
            common.save_checkpoint(args.save, model, opt, step + 1, run)
        if args.eval_every and (step + 1) % args.eval_every == 0:
            acc = greedy_accuracy(model, run.device, args.seed)
            if run.is_main:
                prog.bar and prog.bar.write(f"step {step + 1}: loss {loss_v:.4f}, held-out exact match {acc:.3f}")
            if acc >= args.target_acc:
                steps = step + 1
                break
    prog.close()
    if acc is None or (args.eval_every and steps % args.eval_every):
        acc = greedy_accuracy(model, run.device, args.seed)
    if args.save:
        common.save_checkpoint(args.save, model, opt, steps, run)
    common.finish_trace(run)
    if run.is_main:
        dt = time.perf_counter() - t0
        print(f"done: {steps} steps in {dt:.1f}s, loss {first_loss:.4f} -> {loss_v:.4f}, "
              f"held-out exact-match accuracy {acc:.4f}")
    return {"loss": loss_v, "first_loss": first_loss, "accuracy": acc, "steps": steps}


if __name__ == "__main__":
    main()
