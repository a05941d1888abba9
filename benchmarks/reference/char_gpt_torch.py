"""PyTorch twin of examples/char_gpt.py: the same GPT (gpt_torch, weights copied from the vt model's
initialisation), text, vocabulary, batches, AdamW, schedule and clipping; train/val loss."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torch_common as tc
from gpt_torch import GPT

import char_gpt as ex
from common import batch_rng
from gpt import GPT as VtGPT, GPTConfig, cosine_lr


@torch.no_grad()
def evaluate(model, corpus, split, cfg, seed, batches, dev):
    model.eval()
    total = 0.0
    for i in range(batches):
        x, y = corpus.batch(split, np.random.default_rng([seed, 999, i]), cfg["batch"], cfg["seq"])
        logits = model(torch.from_numpy(x).to(dev))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).to(dev).reshape(-1)).item()
    model.train()
    return total / batches


def main(argv=None):
    p = tc.parser(__doc__.splitlines()[0])
    p.add_argument("--text", default=None)
    p.add_argument("--eval-batches", type=int, default=4)
    args = p.parse_args(argv)
    cfg = dict(ex.CONFIGS[args.config])
    steps, gbatch, lr = args.steps or cfg["steps"], args.batch_size or cfg["batch"], args.lr or cfg["lr"]
    cfg["batch"] = gbatch
    dev = tc.device(args)
    text, what = ex.load_text(args, cfg)
    corpus = ex.Corpus(text)
    V = len(corpus.chars)
    vcfg = GPTConfig(vocab=V, seq=cfg["seq"], dim=cfg["dim"], layers=cfg["layers"], heads=cfg["heads"])
    model = tc.load_weights(GPT(V, cfg["seq"], cfg["dim"], cfg["layers"], cfg["heads"]),
                            tc.vt_init_weights(lambda: VtGPT(vcfg), args.seed), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    tm = tc.Timer()
    for step in range(steps):
        tm.start()
        x, y = corpus.batch("train", batch_rng(args.seed, step, 0), gbatch, cfg["seq"])
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(cfg["warmup"], steps // 10 + 1))
        logits = model(torch.from_numpy(x).to(dev))
        loss = F.cross_entropy(logits.reshape(-1, V), torch.from_numpy(y).to(dev).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tm.stop(loss.item())
    tr = evaluate(model, corpus, "train", cfg, args.seed, args.eval_batches, dev)
    va = evaluate(model, corpus, "val", cfg, args.seed, args.eval_batches, dev)
    print(f"torch char_gpt ({what}): {steps} steps, {tm.ms:.1f} ms/step, loss {tm.first_loss:.4f} -> {tm.loss:.4f}, "
          f"train loss {tr:.4f}, val loss {va:.4f}")
    return tc.finish(args, {"example": "char_gpt", "steps": steps, "loss": tm.loss, "first_loss": tm.first_loss,
                            "train_loss": tr, "val_loss": va, "ms_per_step": tm.ms, "device": str(dev)})


if __name__ == "__main__":
    main()
