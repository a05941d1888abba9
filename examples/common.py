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

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
try:
    import vibetensor as vt  # noqa: E402
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(_HERE))
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
    p.add_argument("--result-json", default=None, help="write the final result (one JSON object) here")
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="stop after step K as if interrupted (the lr schedule still spans --steps)")
    return p


@dataclass
class Run:
    rank: int
    world: int            # processes; each gets global_batch / world samples
    device: vt.Device
    is_main: bool
    args: argparse.Namespace
    local_devices: int = 1  # > 1: one process drives several devices (vt-launch --single-process)


def setup(args) -> Run:
    """Pick the device, join the data-parallel group when launched with several ranks, seed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = args.device
    if want == "auto":
        want = "cuda" if vt.cuda.is_available() else "cpu"
    if want not in ("cpu", "cuda"):
        raise SystemExit(f"--device {args.device!r}: use cpu, cuda or auto")
    if want == "cuda" and not vt.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available (install the cuda12/cuda13 extra "
                         "on a GPU machine, or use --device cpu)")
    dev = vt.device(f"cuda:{local % max(1, vt.cuda.device_count())}") if want == "cuda" else vt.device("cpu")
    n_local = 1
    if world == 1 and os.environ.get("VT_SINGLE_PROCESS") == "1":
        # vt-launch --single-process: one process over every local device (CUDA devices, or the
        # virtual CPU devices of VT_CPU_DEVICES); DDP splits each batch across them.
        n_local = vt.cuda.device_count() if want == "cuda" else int(os.environ.get("VT_CPU_DEVICES", "1") or 1)
        if n_local > 1:
            dev = vt.device("cuda:0" if want == "cuda" else "cpu:0")
    if world > 1 or n_local > 1:
        import vibetensor.collectives as dist
        if not dist.is_initialized():
            backend = "local" if n_local > 1 else ("nccl" if dev.type == "cuda" else "mpi")
            dist.init_process_group(backend=backend)
    if dev.type == "cpu":
        _share_cores()
    vt.manual_seed(args.seed)
    if args.trace:
        vt.observe.set_mode("basic")
    return Run(rank, world, dev, rank == 0, args, n_local)


def _share_cores():
    """Several ranks on one host each default to a BLAS thread per core: 2 ranks on 2 cores then run
    4 spinning threads and a step takes ~4x longer (measured on minigpt_reverse). Like torchrun, give
    each local rank cores // local ranks threads unless the user set OMP_NUM_THREADS."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if local_world <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(max(1, (os.cpu_count() or 1) // local_world))


def wrap_ddp(model, run: Run):
    """DistributedDataParallel when there is more than one replica (ranks or local devices)."""
    if run.world > 1 or run.local_devices > 1:
        from vibetensor.nn.parallel import DistributedDataParallel
        return DistributedDataParallel(model)
    return model


def seed_step(seed: int, step: int, rank: int):
    """Reseed vt's generators (dropout, sampling) from (seed, step, rank): a resumed run draws the
    same numbers as an uninterrupted one without checkpointing generator state."""
    vt.manual_seed(int(np.random.SeedSequence([seed, step, rank, 7]).generate_state(1)[0]))


def last_step(args, steps: int) -> int:
    """Where this run's loop ends: --steps, or --stop-after K when given (an interruption)."""
    return steps if args.stop_after is None else max(0, min(steps, args.stop_after))


def eval_share(arr, run: "Run"):
    """This rank's part of an evaluation set (np.array_split: every row on exactly one rank)."""
    return np.array_split(arr, run.world)[run.rank]


def rank_slice(arr, run: "Run"):
    """This rank's share of a global batch (rows rank*lb .. (rank+1)*lb)."""
    lb = len(arr) // run.world
    return arr[run.rank * lb:(run.rank + 1) * lb]


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
    """tqdm bar (rank 0) with loss and throughput, and per-step metrics as JSON lines."""

    def __init__(self, run: Run, total: int, start: int = 0):
        self.bar = None
        if run.is_main and not run.args.no_progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, mininterval=1.0,
                            file=sys.stderr)
        self.metrics = open(run.args.metrics_json, "a", buffering=1) if (run.args.metrics_json and run.is_main) else None
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


def log(prog: "Progress", msg: str):
    """A line above the progress bar (or plain print without one)."""
    if prog.bar is not None:
        prog.bar.write(msg)
    else:
        print(msg, flush=True)


def save_checkpoint(path: str, model, opt, step: int, run: Run, extra: dict | None = None):
    """Rank 0 writes model + optimizer + step atomically (vt.save: safetensors, temp file + rename);
    the data stream and dropout depend only on (seed, step), so this is all a resume needs."""
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


def all_reduce_sum(values, run: Run):
    """Sum a few numbers (counts for accuracy) over ranks."""
    if run.world == 1:
        return list(values)
    import vibetensor.collectives as dist
    t = vt.tensor([float(v) for v in values], dtype=vt.float64)
    dist.all_reduce(t)
    return t.tolist()


def finish(run: Run, result: dict):
    """Print the one-line result and write --result-json (rank 0)."""
    if not run.is_main:
        return
    print("RESULT " + json.dumps(result, sort_keys=True))
    if run.args.result_json:
        with open(run.args.result_json, "w") as f:
            json.dump(result, f, sort_keys=True)


@vt.no_grad()
def classification_accuracy(model, x, y, device, run: Run, batch: int = 1000) -> float:
    """Accuracy over this rank's share of (x, y), summed over ranks (model left in train mode)."""
    model.eval()
    lx, ly = eval_share(x, run), eval_share(y, run)
    correct = 0
    for i in range(0, len(lx), batch):
        pred = model(vt.tensor(lx[i:i + batch], device=device)).argmax(dim=-1).cpu().numpy()
        correct += int((pred == ly[i:i + batch]).sum())
    model.train()
    c, n = all_reduce_sum([correct, len(ly)], run)
    return c / n
