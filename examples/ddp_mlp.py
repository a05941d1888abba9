"""Data-parallel MLP (Linear -> GELU -> Linear) on teacher-labelled synthetic data, gradients
averaged with vibetensor's ring allreduce; plus a weak/strong-scaling harness.

    vt-launch -n 2 examples/ddp_mlp.py                  # 2 ranks, ring allreduce of one flat bucket
    python examples/ddp_mlp.py --world-size 4           # same, launching itself through vt-launch
    python examples/ddp_mlp.py --sync ddp               # DistributedDataParallel instead
    python examples/ddp_mlp.py --scaling                # ms/step, samples/s, speedup, efficiency for 1, 2, 4 ranks
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import common
from gpt import cosine_lr

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F

CONFIGS = {
    "small": dict(steps=300, batch=256, lr=3e-3, d_in=32, hidden=256, classes=10),
    "full": dict(steps=500, batch=4096, lr=1e-3, d_in=1024, hidden=4096, classes=16),
}
TEACHER_SEED = 12345  # the task, fixed whatever --seed is


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, classes: int):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Teacher:
    """A fixed random two-layer tanh network; labels are the argmax of its logits."""

    def __init__(self, d_in: int, classes: int):
        g = np.random.default_rng(TEACHER_SEED)
        self.w1 = g.normal(0, 1 / np.sqrt(d_in), size=(d_in, 64))
        self.w2 = g.normal(0, 1 / np.sqrt(64), size=(64, classes))

    def sample(self, rng: np.random.Generator, n: int, d_in: int):
        x = rng.standard_normal((n, d_in)).astype(np.float32)
        y = np.argmax(np.tanh(x @ self.w1) @ self.w2, axis=1).astype(np.int64)
        return x, y


def ring_allreduce_grads(params, run):
    """Average gradients over ranks: one flat bucket through all_reduce(algorithm="ring")."""
    import vibetensor.collectives as dist
    grads = [p.grad for p in params]
    flat = vt.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, algorithm="ring")
    flat = flat / run.world
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[off:off + n].reshape(g.shape)
        off += n


def train(args, cfg) -> dict:
    steps, gbatch, lr = cfg["steps"], cfg["batch"], cfg["lr"]
    run = common.setup(args)
    lb = common.local_batch(gbatch, run)
    teacher = Teacher(cfg["d_in"], cfg["classes"])
    xte, yte = teacher.sample(np.random.default_rng([TEACHER_SEED, 1]), 4096, cfg["d_in"])

    model = MLP(cfg["d_in"], cfg["hidden"], cfg["classes"]).to(run.device)
    opt = vt.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start = common.load_checkpoint(args.resume, model, opt, run) if args.resume else 0
    use_ddp = args.sync == "ddp"
    net = common.wrap_ddp(model, run) if use_ddp else model
    if not use_ddp and run.world > 1:  # every replica starts from rank 0's parameters
        import vibetensor.collectives as dist
        for p in model.parameters():
            dist.broadcast(p.data if hasattr(p, "data") else p, src=0)
    params = list(model.parameters())
    if run.is_main:
        n = sum(p.numel() for p in params)
        print(f"ddp_mlp: {n:,} parameters on {run.device}, {run.world} rank(s), global batch {gbatch} "
              f"({lb} per rank), sync {args.sync}, {steps} steps")

    prog = common.Progress(run, steps, start)
    first_loss = loss_v = None
    times = []
    t0 = time.perf_counter()
    end = common.last_step(args, steps)
    for step in range(start, end):
        if run.device.type == "cuda":
            vt.cuda.synchronize()
        ts = time.perf_counter()
        x, y = teacher.sample(common.batch_rng(args.seed, step, 0), gbatch, cfg["d_in"])
        x, y = common.rank_slice(x, run), common.rank_slice(y, run)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(20, steps // 10 + 1))
        with vt.observe.span("step"):
            loss = F.cross_entropy(net(vt.tensor(x, device=run.device)), vt.tensor(y, device=run.device))
            opt.zero_grad()
            loss.backward()
            if not use_ddp and run.world > 1:
                ring_allreduce_grads(params, run)
            opt.step()
        lv = loss.item()  # also synchronises the device
        times.append(time.perf_counter() - ts)
        loss_v = common.all_reduce_mean(lv, run) if args.log_loss or step in (start, end - 1) else lv
        first_loss = loss_v if first_loss is None else first_loss
        prog.update(step + 1, loss=loss_v, samples_s=gbatch / times[-1])
        if args.save and args.save_every and (step + 1) % args.save_every == 0:
            common.save_checkpoint(args.save, model, opt, step + 1, run)
    prog.close()
    wall = time.perf_counter() - t0
    with vt.no_grad():
        xs, ys = common.eval_share(xte, run), common.eval_share(yte, run)
        pred = model(vt.tensor(xs, device=run.device)).argmax(dim=-1).cpu().numpy()
        correct, total = common.all_reduce_sum([(pred == ys).sum(), len(ys)], run)
    acc = correct / total
    if args.save:
        common.save_checkpoint(args.save, model, opt, end, run)
    common.finish_trace(run)
    timed = times[min(args.warmup_steps, len(times) - 1):] if times else [0.0]
    ms = 1000 * float(np.mean(timed))
    ms = common.all_reduce_mean(ms, run)  # the slowest rank sets the pace; report the mean
    if run.is_main:
        print(f"done: {end} steps in {wall:.1f}s, {ms:.2f} ms/step, {gbatch / ms * 1000:.0f} samples/s, "
              f"loss {first_loss:.4f} -> {loss_v:.4f}, teacher agreement on held-out data {acc:.4f}")
    result = {"example": "ddp_mlp", "steps": end, "loss": loss_v, "first_loss": first_loss, "accuracy": acc,
              "ms_per_step": ms, "samples_per_s": gbatch / ms * 1000, "global_batch": gbatch,
              "world": run.world, "sync": args.sync, "wall_s": wall, "device": str(run.device)}
    common.finish(run, result)
    return result


def launcher_cmd(n: int) -> list[str]:
    return [sys.executable, "-m", "vibetensor.launch", "-n", str(n)]


def child_env() -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def relaunch(args, argv) -> int:
    """--world-size N outside a launcher: run this script under vt-launch -n N."""
    rest = [a for a in argv if not a.startswith("--world-size")]
    if "--world-size" in argv:  # drop the value that followed a separate "--world-size"
        i = argv.index("--world-size")
        rest = argv[:i] + argv[i + 2:]
    cmd = launcher_cmd(args.world_size) + [os.path.abspath(__file__)] + rest
    return subprocess.call(cmd, env=child_env())


def scaling(args, cfg) -> list[dict]:
    """Weak scaling (fixed per-rank batch) and strong scaling (fixed global batch) over world sizes."""
    sizes = [int(s) for s in args.scaling_sizes.split(",")]
    per_rank = cfg["batch"] // max(sizes) if args.batch_size is None else args.batch_size // max(sizes)
    per_rank = max(1, per_rank)
    rows = []
    for mode in ("weak", "strong"):
        base = None
        for k in sizes:
            gb = per_rank * k if mode == "weak" else per_rank * max(sizes)
            with tempfile.TemporaryDirectory() as td:
                out = os.path.join(td, "r.json")
                cmd = launcher_cmd(k) + [os.path.abspath(__file__), "--config", args.config, "--device", args.device,
                                         "--steps", str(args.steps or 30), "--batch-size", str(gb),
                                         "--warmup-steps", str(args.warmup_steps), "--sync", args.sync,
                                         "--seed", str(args.seed), "--no-progress", "--result-json", out]
                for flag, v in (("--hidden", args.hidden), ("--lr", args.lr)):
                    if v is not None:
                        cmd += [flag, str(v)]
                if args.trace:
                    cmd += ["--trace", f"{args.trace}.{mode}{k}"]
                proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
                if proc.returncode != 0 or not os.path.exists(out):
                    raise SystemExit(f"scaling run ({mode}, {k} ranks) failed with exit code {proc.returncode}:\n"
                                     f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
                with open(out) as f:
                    r = json.load(f)
            ms = r["ms_per_step"]
            base = base or r
            if mode == "strong":
                speedup = base["ms_per_step"] / ms
            else:
                speedup = r["samples_per_s"] / base["samples_per_s"]
            eff = speedup / (k / sizes[0])
            rows.append(dict(mode=mode, world=k, global_batch=gb, ms_per_step=ms, samples_per_s=r["samples_per_s"],
                             speedup=speedup, efficiency=eff, final_loss=r["loss"]))
            print(f"{mode:>6} {k:>5} {gb:>8} {ms:>10.2f} {r['samples_per_s']:>12.0f} {speedup:>8.2f} {eff:>10.2%}",
                  flush=True)
    return rows


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--sync", default="ring", choices=["ring", "ddp"],
                   help="ring: one flat all_reduce(algorithm='ring') per step; ddp: DistributedDataParallel")
    p.add_argument("--world-size", type=int, default=None,
                   help="outside a launcher: run under vt-launch with this many ranks")
    p.add_argument("--scaling", action="store_true", help="weak/strong scaling over --scaling-sizes ranks")
    p.add_argument("--scaling-sizes", default="1,2,4")
    p.add_argument("--warmup-steps", type=int, default=5, help="steps left out of ms/step")
    p.add_argument("--log-loss", action="store_true", help="all-reduce the loss every step for the progress bar")
    p.add_argument("--hidden", type=int, default=None)
    args = p.parse_args(argv)
    cfg = dict(CONFIGS[args.config])
    for k, v in (("steps", args.steps), ("batch", args.batch_size), ("lr", args.lr), ("hidden", args.hidden)):
        if v is not None:
            cfg[k] = v
    launched = "WORLD_SIZE" in os.environ
    if args.scaling:
        print(f"scaling ({args.sync} sync, {args.config} config, hidden {cfg['hidden']}, {args.steps or 30} steps, "
              f"ms/step excludes {args.warmup_steps} warm-up steps)")
        print(f"{'mode':>6} {'ranks':>5} {'batch':>8} {'ms/step':>10} {'samples/s':>12} {'speedup':>8} {'efficiency':>10}")
        return scaling(args, cfg)
    if args.world_size and args.world_size > 1 and not launched:
        rc = relaunch(args, argv)
        if __name__ == "__main__":
            sys.exit(rc)
        return rc
    if launched and args.world_size and int(os.environ["WORLD_SIZE"]) != args.world_size:
        raise SystemExit(f"--world-size {args.world_size} but the launcher started {os.environ['WORLD_SIZE']} ranks")
    return train(args, cfg)


if __name__ == "__main__":
    main()
