"""Handwritten digits: an MLP or a small CNN on real data available offline.

Default data: scikit-learn's bundled 8x8 digits (1797 images, fixed 80/20 split); with
--data-dir, the MNIST idx files (train-images-idx3-ubyte[.gz], ...). Reports test accuracy.

    python examples/mnist.py --model cnn
    vt-launch -n 2 examples/mnist.py --model mlp
"""
from __future__ import annotations

import time


import common
import data as datasets
from gpt import cosine_lr

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F

CONFIGS = {
    "small": dict(steps=600, batch=64, lr=2e-3, hidden=256, channels=(16, 32)),
    "full": dict(steps=3000, batch=128, lr=1e-3, hidden=512, channels=(32, 64)),
}


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    """conv3x3 -> ReLU -> maxpool2 -> conv3x3 -> ReLU -> maxpool2 -> linear."""

    def __init__(self, side: int, channels=(16, 32), classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, classes))

    def forward(self, x):
        return self.net(x)


def load(args):
    if args.data_dir:
        xtr, ytr, xte, yte = datasets.mnist(args.data_dir)
        return xtr, ytr, xte, yte, f"MNIST idx files from {args.data_dir}"
    xtr, ytr, xte, yte = datasets.digits()
    return xtr, ytr, xte, yte, "scikit-learn load_digits (8x8 handwritten digits)"


def make_model(kind: str, side: int, cfg: dict):
    return MLP(side * side, cfg["hidden"]) if kind == "mlp" else CNN(side, cfg["channels"])


def accuracy(model, x, y, device, run, batch: int = 1000) -> float:
    return common.classification_accuracy(model, x, y, device, run, batch)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    p.add_argument("--data-dir", default=None, help="directory with the MNIST idx files")
    p.add_argument("--hidden", type=int, default=None)
    args = p.parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    steps = args.steps or cfg["steps"]
    gbatch = args.batch_size or cfg["batch"]
    lr = args.lr or cfg["lr"]
    if args.hidden:
        cfg["hidden"] = args.hidden
    run = common.setup(args)
    common.local_batch(gbatch, run)
    xtr, ytr, xte, yte, what = load(args)
    side = xtr.shape[-1]

    model = make_model(args.model, side, cfg).to(run.device)
    opt = vt.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    start = common.load_checkpoint(args.resume, model, opt, run) if args.resume else 0
    ddp = common.wrap_ddp(model, run)
    if run.is_main:
        n = sum(p.numel() for p in model.parameters())
        print(f"mnist: {args.model} ({n:,} parameters) on {what}: {len(ytr)} train / {len(yte)} test, "
              f"{run.device}, {run.world} rank(s), global batch {gbatch}, {steps} steps")

    prog = common.Progress(run, steps, start)
    first_loss = loss_v = None
    train_time, t0 = 0.0, time.perf_counter()
    end = common.last_step(args, steps)
    for step in range(start, end):
        ts = time.perf_counter()
        idx = common.batch_rng(args.seed, step, 0).integers(0, len(ytr), size=gbatch)
        idx = common.rank_slice(idx, run)
        x, y = vt.tensor(xtr[idx], device=run.device), vt.tensor(ytr[idx], device=run.device)
        common.seed_step(args.seed, step, run.rank)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(50, steps // 10 + 1))
        with vt.observe.span("step"):
            loss = F.cross_entropy(ddp(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss_v = common.all_reduce_mean(loss.item(), run)
        train_time += time.perf_counter() - ts
        first_loss = loss_v if first_loss is None else first_loss
        prog.update(step + 1, loss=loss_v, samples_s=(step + 1 - start) * gbatch / max(1e-9, train_time))
        if args.save and args.save_every and (step + 1) % args.save_every == 0:
            common.save_checkpoint(args.save, model, opt, step + 1, run)
    prog.close()
    wall = time.perf_counter() - t0
    train_acc = accuracy(model, xtr, ytr, run.device, run)
    test_acc = accuracy(model, xte, yte, run.device, run)
    if args.save:
        common.save_checkpoint(args.save, model, opt, end, run)
    common.finish_trace(run)
    ms = 1000 * train_time / max(1, end - start)
    if run.is_main:
        print(f"done: {end} steps in {wall:.1f}s ({ms:.1f} ms/step), loss {first_loss:.4f} -> {loss_v:.4f}, "
              f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")
    result = {"example": "mnist", "model": args.model, "steps": end, "loss": loss_v, "first_loss": first_loss,
              "train_accuracy": train_acc, "test_accuracy": test_acc, "ms_per_step": ms, "wall_s": wall,
              "world": run.world, "device": str(run.device)}
    common.finish(run, result)
    return result


if __name__ == "__main__":
    main()
