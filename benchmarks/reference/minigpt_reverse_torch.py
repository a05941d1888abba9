"""PyTorch twin of examples/minigpt_reverse.py: same GPT (gpt_torch, weights copied from the vt
model's initialisation), same batches, AdamW, schedule, clipping and early stop on the held-out
greedy exact match."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torch_common as tc
from gpt_torch import GPT

import minigpt_reverse as ex
from common import batch_rng
from gpt import GPT as VtGPT, GPTConfig, cosine_lr


@torch.no_grad()
def greedy_accuracy(model, dev, seed, per_len=16):
    model.eval()
    a, ns = ex.held_out(seed, per_len)
    ctx = np.full((len(ns), 2 * ex.MAX_N + 3), ex.PAD, dtype=np.int64)
    for i, (n, ai) in enumerate(zip(ns, a)):
        ctx[i, 0], ctx[i, 1:n + 1], ctx[i, n + 1] = ex.BOS, ai, ex.SEP
    for j in range(ex.MAX_N + 1):
        rows = np.nonzero(ns >= j)[0]
        cur = ns[rows] + 1 + j
        pred = model(torch.from_numpy(ctx[rows, :int(cur.max()) + 1]).to(dev)).argmax(-1).cpu().numpy()
        ctx[rows, cur + 1] = pred[np.arange(len(rows)), cur]
    ok = [np.array_equal(ctx[i, n + 2:2 * n + 3], np.concatenate([ai[::-1], [ex.EOS]])) for i, (n, ai) in enumerate(zip(ns, a))]
    model.train()
    return float(np.mean(ok))


def main(argv=None):
    p = tc.parser(__doc__.splitlines()[0])
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--target-acc", type=float, default=0.99)
    args = p.parse_args(argv)
    cfg = dict(ex.CONFIGS[args.config])
    steps, gbatch, lr = args.steps or cfg["steps"], args.batch_size or cfg["batch"], args.lr or cfg["lr"]
    dev = tc.device(args)
    vcfg = GPTConfig(vocab=ex.VOCAB, seq=ex.SEQ, dim=cfg["dim"], layers=cfg["layers"], heads=cfg["heads"])
    model = tc.load_weights(GPT(ex.VOCAB, ex.SEQ, cfg["dim"], cfg["layers"], cfg["heads"]),
                            tc.vt_init_weights(lambda: VtGPT(vcfg), args.seed), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    tm, done, acc = tc.Timer(), 0, None
    for step in range(steps):
        tm.start()
        seqs, sep = ex.make_batch(batch_rng(args.seed, step, 0), gbatch)
        x, y = ex.inputs_targets(seqs, sep)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(cfg["warmup"], steps // 10 + 1))
        logits = model(torch.from_numpy(x).to(dev))
        loss = F.cross_entropy(logits.reshape(-1, ex.VOCAB), torch.from_numpy(y).to(dev).reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tm.stop(loss.item())
        done = step + 1
        if args.eval_every and done % args.eval_every == 0 and done < steps:
            acc = greedy_accuracy(model, dev, args.seed)
            if acc >= args.target_acc:
                break
    if acc is None or done % max(1, args.eval_every) or done == steps:
        acc = greedy_accuracy(model, dev, args.seed)
    print(f"torch minigpt_reverse: {done} steps, {tm.ms:.1f} ms/step, loss {tm.first_loss:.4f} -> {tm.loss:.4f}, "
          f"held-out greedy exact match {acc:.4f}")
    return tc.finish(args, {"example": "minigpt_reverse", "steps": done, "loss": tm.loss, "first_loss": tm.first_loss,
                            "accuracy": acc, "ms_per_step": tm.ms, "device": str(dev)})


if __name__ == "__main__":
    main()
