"""Vision Transformer on CIFAR-10 (patch 4, dim 256, depth 6, 8 heads, AdamW 3e-4, cosine schedule).

With --data-dir pointing at the official *binary* CIFAR-10 batches (data_batch_1..5.bin,
test_batch.bin; parsed with numpy, nothing downloaded or unpickled) it trains on CIFAR-10;
otherwise on a generated CIFAR-shaped image set with learnable structure (and says so).
Reports train and test accuracy.

    python examples/vit_cifar.py                                   # small ViT, generated images
    vt-launch -n 2 examples/vit_cifar.py --data-dir ~/cifar-10-batches-bin --config full
"""
from __future__ import annotations

import time
from dataclasses import dataclass


import common
import data as datasets
from gpt import Block, cosine_lr

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F

CONFIGS = {
    "small": dict(steps=300, batch=64, lr=1e-3, warmup=30, dim=64, depth=2, heads=4, n_train=5000, n_test=1000),
    "full": dict(steps=4000, batch=128, lr=3e-4, warmup=200, dim=256, depth=6, heads=8, n_train=50000, n_test=10000),
}
PATCH, SIDE, CLASSES = 4, 32, 10


@dataclass(frozen=True)
class ViTConfig:
    dim: int = 256
    depth: int = 6
    heads: int = 8
    patch: int = PATCH
    side: int = SIDE
    classes: int = CLASSES
    dropout: float = 0.0
    causal: bool = False


def patchify(x, p: int):
    """(B, C, H, W) -> (B, H/p * W/p, C*p*p), patches in row-major order, each flattened (c, i, j):
    the same numbers a Conv2d(C, dim, p, stride=p) would see."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


class ViT(nn.Module):
    def __init__(self, c: ViTConfig):
        super().__init__()
        self.config = c
        n = (c.side // c.patch) ** 2
        self.embed = nn.Linear(3 * c.patch * c.patch, c.dim)
        self.cls = nn.Parameter(vt.zeros(1, 1, c.dim))
        self.pos = nn.Parameter(vt.zeros(1, n + 1, c.dim))
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.depth)])
        self.ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos, 0.0, 0.02)
        nn.init.normal_(self.cls, 0.0, 0.02)

    def forward(self, img):
        x = self.embed(patchify(img, self.config.patch))
        b = x.shape[0]
        x = vt.cat([self.cls.expand(b, 1, self.config.dim), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x[:, 0]))


def load(args, cfg):
    if args.data_dir:
        xtr, ytr, xte, yte = datasets.cifar10(args.data_dir)
        return xtr, ytr, xte, yte, f"CIFAR-10 binary batches from {args.data_dir}"
    xtr, ytr, xte, yte = datasets.synthetic_images(cfg["n_train"], cfg["n_test"])
    return xtr, ytr, xte, yte, ("GENERATED images (no --data-dir): 10 classes of oriented colour gratings "
                                "with occluders and noise, CIFAR-shaped; not CIFAR-10")


def augment(x, rng):
    """Random horizontal flips (CIFAR's standard augmentation), drawn from the step's generator."""
    flip = rng.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = x[flip, :, :, ::-1]
    return x


def accuracy(model, x, y, device, run, batch: int = 500) -> float:
    return common.classification_accuracy(model, x, y, device, run, batch)


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="directory with the CIFAR-10 binary batches")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on at most N train/test images")
    p.add_argument("--n-train", type=int, default=None, help="generated data: training images")
    p.add_argument("--n-test", type=int, default=None, help="generated data: test images")
    for k in ("dim", "depth", "heads"):
        p.add_argument(f"--{k}", type=int, default=None)
    args = p.parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    for k, v in (("steps", args.steps), ("batch", args.batch_size), ("lr", args.lr), ("dim", args.dim),
                 ("depth", args.depth), ("heads", args.heads), ("n_train", args.n_train), ("n_test", args.n_test)):
        if v is not None:
            cfg[k] = v
    steps, gbatch, lr = cfg["steps"], cfg["batch"], cfg["lr"]
    run = common.setup(args)
    common.local_batch(gbatch, run)
    xtr, ytr, xte, yte, what = load(args, cfg)

    model = ViT(ViTConfig(dim=cfg["dim"], depth=cfg["depth"], heads=cfg["heads"])).to(run.device)
    opt = vt.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    start = common.load_checkpoint(args.resume, model, opt, run) if args.resume else 0
    ddp = common.wrap_ddp(model, run)
    if run.is_main:
        n = sum(p.numel() for p in model.parameters())
        print(f"vit_cifar: data: {what}")
        print(f"vit_cifar: ViT patch {PATCH} dim {cfg['dim']} depth {cfg['depth']} heads {cfg['heads']} "
              f"({n:,} parameters) on {run.device}, {run.world} rank(s), {len(ytr)} train / {len(yte)} test, "
              f"global batch {gbatch}, {steps} steps")

    prog = common.Progress(run, steps, start)
    first_loss = loss_v = None
    train_time, t0 = 0.0, time.perf_counter()
    end = common.last_step(args, steps)
    for step in range(start, end):
        ts = time.perf_counter()
        rng = common.batch_rng(args.seed, step, 0)
        idx = rng.integers(0, len(ytr), size=gbatch)
        x = common.rank_slice(augment(xtr[idx], rng), run)
        y = common.rank_slice(ytr[idx], run)
        common.seed_step(args.seed, step, run.rank)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(cfg["warmup"], steps // 10 + 1))
        with vt.observe.span("step"):
            loss = F.cross_entropy(ddp(vt.tensor(x, device=run.device)), vt.tensor(y, device=run.device))
            opt.zero_grad()
            loss.backward()
            vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        loss_v = common.all_reduce_mean(loss.item(), run)
        train_time += time.perf_counter() - ts
        first_loss = loss_v if first_loss is None else first_loss
        prog.update(step + 1, loss=loss_v, img_s=(step + 1 - start) * gbatch / max(1e-9, train_time))
        if args.save and args.save_every and (step + 1) % args.save_every == 0:
            common.save_checkpoint(args.save, model, opt, step + 1, run)
    prog.close()
    wall = time.perf_counter() - t0
    lim = args.eval_limit
    train_acc = accuracy(model, xtr[:lim or min(len(ytr), 10000)], ytr[:lim or min(len(ytr), 10000)], run.device, run)
    test_acc = accuracy(model, xte[:lim], yte[:lim], run.device, run)
    if args.save:
        common.save_checkpoint(args.save, model, opt, end, run)
    common.finish_trace(run)
    ms = 1000 * train_time / max(1, end - start)
    if run.is_main:
        print(f"done: {end} steps in {wall:.1f}s ({ms:.1f} ms/step), loss {first_loss:.4f} -> {loss_v:.4f}, "
              f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")
    result = {"example": "vit_cifar", "data": "cifar10" if args.data_dir else "generated", "steps": end,
              "loss": loss_v, "first_loss": first_loss, "train_accuracy": train_acc, "test_accuracy": test_acc,
              "ms_per_step": ms, "wall_s": wall, "world": run.world, "device": str(run.device)}
    common.finish(run, result)
    return result


if __name__ == "__main__":
    main()
