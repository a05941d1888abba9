"""PyTorch twin of examples/mnist.py: the same MLP / CNN (weights copied from the vt model's
initialisation), digits or MNIST data, batches, AdamW and schedule."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_common as tc

import mnist as ex
from common import batch_rng
from gpt import cosine_lr


def torch_model(kind, side, cfg):
    if kind == "mlp":
        h = cfg["hidden"]
        net = nn.Sequential(nn.Flatten(), nn.Linear(side * side, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                            nn.Linear(h, 10))
    else:
        c1, c2 = cfg["channels"]
        net = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, 10))
    m = nn.Module()
    m.net = net
    m.forward = lambda x: net(x)
    return m


@torch.no_grad()
def accuracy(model, x, y, dev):
    pred = torch.cat([model(torch.from_numpy(x[i:i + 1000]).to(dev)).argmax(-1).cpu() for i in range(0, len(x), 1000)])
    return float((pred.numpy() == y).mean())


def main(argv=None):
    p = tc.parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    cfg = dict(ex.CONFIGS[args.config])
    steps, gbatch, lr = args.steps or cfg["steps"], args.batch_size or cfg["batch"], args.lr or cfg["lr"]
    dev = tc.device(args)
    xtr, ytr, xte, yte, what = ex.load(args)
    side = xtr.shape[-1]
    model = tc.load_weights(torch_model(args.model, side, cfg),
                            tc.vt_init_weights(lambda: ex.make_model(args.model, side, cfg), args.seed), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    tm = tc.Timer()
    for step in range(steps):
        tm.start()
        idx = batch_rng(args.seed, step, 0).integers(0, len(ytr), size=gbatch)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(50, steps // 10 + 1))
        loss = F.cross_entropy(model(torch.from_numpy(xtr[idx]).to(dev)), torch.from_numpy(ytr[idx]).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tm.stop(loss.item())
    model.eval()
    tr, te = accuracy(model, xtr, ytr, dev), accuracy(model, xte, yte, dev)
    print(f"torch mnist ({args.model}, {what}): {steps} steps, {tm.ms:.1f} ms/step, loss {tm.first_loss:.4f} -> "
          f"{tm.loss:.4f}, train accuracy {tr:.4f}, test accuracy {te:.4f}")
    return tc.finish(args, {"example": "mnist", "model": args.model, "steps": steps, "loss": tm.loss,
                            "first_loss": tm.first_loss, "train_accuracy": tr, "test_accuracy": te,
                            "ms_per_step": tm.ms, "device": str(dev)})


if __name__ == "__main__":
    main()
