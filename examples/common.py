"""What every example shares: arguments, device and data-parallel setup, progress, metrics,
atomic checkpoints with exact resume, and Chrome traces."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import vibetensor as vt  # noqa: E402


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when available)")
    p.add_argument("--config", default="small", choices=["small", "full"],
                   help="small: finishes on a 2-core CPU in minutes; full: the reference size (GPU)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: per config)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch size (split over ranks)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics-json", default=None, help="write per-step metrics (JSON lines) here")
    p.add_argument("--save", default=None, help="checkpoint path (safetensors) written at the end")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--resume", default=None, help="resume from this checkpoint")
    p.add_argument("--trace", default=None, help="write a Chrome trace of the run here")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return p


@dataclass
class Run:
    rank: int
    world: int
    device: vt.Device
    is_main: bool
    args: argparse.Namespace


def setup(args) -> Run:
    """Pick the device, join the data-parallel group when launched with several ranks, seed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = args.device
    if want == "auto":
        want = "cuda" if vt.cuda.is_available() else "cpu"
    dev = vt.device(f"cuda:{local % max(1, vt.cuda.device_count())}") if want == "cuda" else vt.device("cpu")
    if world > 1:
        import vibetensor.collectives as dist
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "mpi")
    vt.manual_seed(args.seed)
    if args.trace:
        vt.observe.set_mode("basic")
    return Run(rank, world, dev, rank == 0, args)


def wrap_ddp(model, run: Run):
    if run.world > 1:
        from vibetensor.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model)
    return model


def unwrap(model):
    return getattr(model, "module", model)


def local_batch(global_batch: int, run: Run) -> int:
    if global_batch % run.world:
        raise SystemExit(f"--batch-size {global_batch} is not divisible by the {run.world} ranks")
    return global_batch // run.world


def batch_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    """Data for step ``step`` depends only on (seed, step, rank): resume needs no data-loader state."""
    return np.random.default_rng([seed, step, rank])


class Progress:
    def __init__(self, run: Run, total: int, start: int = 0):
        self.bar = None
        if run.is_main and not run.args.no_progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, mininterval=1.0,
                            file=sys.stderr)
        self.metrics = open(run.args.metrics_json, "a") if (run.args.metrics_json and run.is_main) else None
        self.t0 = time.perf_counter()

    def update(self, step: int, **m):
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in m.items()},
                                 refresh=False)
            self.bar.update(1)
        if self.metrics is not None:
            self.metrics.write(json.dumps({"step": step, **m}) + "\n")

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self.metrics is not None:
            self.metrics.close()


def save_checkpoint(path: str, model, opt, step: int, run: Run, extra: dict | None = None):
    if not run.is_main:
        return
    vt.save({"model": unwrap(model).state_dict(), "optim": opt.state_dict(), "step": step,
             "extra": extra or {}}, path)


def load_checkpoint(path: str, model, opt, run: Run) -> int:
    ck = vt.load(path, map_location=str(run.device))
    unwrap(model).load_state_dict(ck["model"])
    opt.load_state_dict(ck["optim"])
    return int(ck["step"])


def finish_trace(run: Run):
    if run.args.trace:
        path = run.args.trace if run.world == 1 else f"{run.args.trace}.rank{run.rank}"
        vt.observe.export_chrome_trace(path)
        if run.is_main:
            print(f"trace written to {path}")


def all_reduce_mean(value: float, run: Run) -> float:
    if run.world == 1:
        return value
    import vibetensor.collectives as dist
    t = vt.tensor([value], dtype=vt.float64)
    dist.all_reduce(t)
    return t.item() / run.world
