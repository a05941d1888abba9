"""PyTorch twin of examples/vit_cifar.py: the same ViT (Linear patch embedding, class token, learned
positions, pre-LN blocks with bidirectional SDPA; weights copied from the vt model's
initialisation), the same data, flips, AdamW, cosine schedule and clipping."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_common as tc

import vit_cifar as ex
from common import batch_rng
from gpt import cosine_lr


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, patch=ex.PATCH, side=ex.SIDE, classes=ex.CLASSES):
        super().__init__()
        self.patch, self.dim = patch, dim
        n = (side // patch) ** 2
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, img):
        b, c, h, w = img.shape
        p = self.patch
        x = img.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        x = torch.cat([self.cls.expand(b, 1, self.dim), self.embed(x)], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x[:, 0]))


@torch.no_grad()
def accuracy(model, x, y, dev):
    model.eval()
    pred = torch.cat([model(torch.from_numpy(x[i:i + 500]).to(dev)).argmax(-1).cpu() for i in range(0, len(x), 500)])
    model.train()
    return float((pred.numpy() == y).mean())


def main(argv=None):
    p = tc.parser(__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--eval-limit", type=int, default=None)
    args = p.parse_args(argv)
    cfg = dict(ex.CONFIGS[args.config])
    steps, gbatch, lr = args.steps or cfg["steps"], args.batch_size or cfg["batch"], args.lr or cfg["lr"]
    dev = tc.device(args)
    xtr, ytr, xte, yte, what = ex.load(args, cfg)
    vcfg = ex.ViTConfig(dim=cfg["dim"], depth=cfg["depth"], heads=cfg["heads"])
    model = tc.load_weights(ViT(cfg["dim"], cfg["depth"], cfg["heads"]),
                            tc.vt_init_weights(lambda: ex.ViT(vcfg), args.seed), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    tm = tc.Timer()
    for step in range(steps):
        tm.start()
        rng = batch_rng(args.seed, step, 0)
        idx = rng.integers(0, len(ytr), size=gbatch)
        x = ex.augment(xtr[idx], rng)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(cfg["warmup"], steps // 10 + 1))
        loss = F.cross_entropy(model(torch.from_numpy(x).to(dev)), torch.from_numpy(ytr[idx]).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tm.stop(loss.item())
    lim = args.eval_limit
    ntr = lim or min(len(ytr), 10000)
    tr, te = accuracy(model, xtr[:ntr], ytr[:ntr], dev), accuracy(model, xte[:lim], yte[:lim], dev)
    print(f"torch vit_cifar ({what[:40]}...): {steps} steps, {tm.ms:.1f} ms/step, loss {tm.first_loss:.4f} -> "
          f"{tm.loss:.4f}, train accuracy {tr:.4f}, test accuracy {te:.4f}")
    return tc.finish(args, {"example": "vit_cifar", "data": "cifar10" if args.data_dir else "generated", "steps": steps,
                            "loss": tm.loss, "first_loss": tm.first_loss, "train_accuracy": tr, "test_accuracy": te,
                            "ms_per_step": tm.ms, "device": str(dev)})


if __name__ == "__main__":
    main()
