"""PyTorch twin of examples/ddp_mlp.py: the same MLP (weights copied from the vt model's
initialisation), teacher, batches, AdamW and schedule. Single process, or data parallel under
torchrun (gloo on CPU, nccl on CUDA; torch's DistributedDataParallel) for the scaling comparison:

    python benchmarks/reference/ddp_mlp_torch.py --config full
    torchrun --nproc-per-node 2 benchmarks/reference/ddp_mlp_torch.py --config full
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_common as tc

import ddp_mlp as ex
from common import batch_rng
from gpt import cosine_lr


class MLP(nn.Module):
    def __init__(self, d_in, hidden, classes):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def main(argv=None):
    p = tc.parser(__doc__.splitlines()[0])
    p.add_argument("--warmup-steps", type=int, default=5)
    args = p.parse_args(argv)
    cfg = dict(ex.CONFIGS[args.config])
    steps, gbatch, lr = args.steps or cfg["steps"], args.batch_size or cfg["batch"], args.lr or cfg["lr"]
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    dev = tc.device(args)
    if world > 1:
        import torch.distributed as dist
        if dev.type == "cuda":
            dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    teacher = ex.Teacher(cfg["d_in"], cfg["classes"])
    xte, yte = teacher.sample(np.random.default_rng([ex.TEACHER_SEED, 1]), 4096, cfg["d_in"])
    model = tc.load_weights(MLP(cfg["d_in"], cfg["hidden"], cfg["classes"]),
                            tc.vt_init_weights(lambda: ex.MLP(cfg["d_in"], cfg["hidden"], cfg["classes"]), args.seed), dev)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    lb = gbatch // world
    times, losses = [], []
    import time
    for step in range(steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        x, y = teacher.sample(batch_rng(args.seed, step, 0), gbatch, cfg["d_in"])
        x, y = x[rank * lb:(rank + 1) * lb], y[rank * lb:(rank + 1) * lb]
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(20, steps // 10 + 1))
        loss = F.cross_entropy(net(torch.from_numpy(x).to(dev)), torch.from_numpy(y).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(xte).to(dev)).argmax(-1).cpu().numpy() == yte).mean())
    ms = 1000 * float(np.mean(times[min(args.warmup_steps, len(times) - 1):]))
    if rank == 0:
        print(f"torch ddp_mlp: {world} rank(s), {steps} steps, {ms:.2f} ms/step, {gbatch / ms * 1000:.0f} samples/s, "
              f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, teacher agreement {acc:.4f}")
        return tc.finish(args, {"example": "ddp_mlp", "steps": steps, "loss": losses[-1], "first_loss": losses[0],
                                "accuracy": acc, "ms_per_step": ms, "samples_per_s": gbatch / ms * 1000,
                                "world": world, "device": str(dev)})


if __name__ == "__main__":
    main()
