"""Host time of the eager train step, this tree against an older revision, alternated in one process.

The lent GPU hosts swing by +-30% between processes (BENCHMARKS.md), which hides changes of a few
percent; two copies of vibetensor in one process, stepped in alternating rounds, see the same host.
The older copy is the package at --base, renamed ``vtbase``:

    python scripts/ab_host.py --base e7e0e18 [--device cuda] [--config medium] [--amp] [--steps 10] [--rounds 8]
    python scripts/ab_host.py --base-dir DIR ...   (DIR/vtbase prepared already, e.g. on a machine without git)
    python scripts/ab_host.py --make-base REV DIR  (prepare DIR/vtbase here, then carry DIR to the GPU machine)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_base(rev, out_dir):
    """``vibetensor`` at git revision ``rev`` as package ``vtbase`` under out_dir."""
    tar = subprocess.run(["git", "-C", ROOT, "archive", rev, "vibetensor"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", out_dir], input=tar, check=True)
    os.rename(os.path.join(out_dir, "vibetensor"), os.path.join(out_dir, "vtbase"))
    for d, _, files in os.walk(os.path.join(out_dir, "vtbase")):
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(d, f)
                with open(p) as fh:
                    s = fh.read()
                with open(p, "w") as fh:
                    fh.write(s.replace("vibetensor", "vtbase"))


def build(vt, cfg, dev, amp, src):
    """profile_ops' train step (train_gpt's model, AdamW, optional bf16 autocast) built on package vt."""
    from profile_ops import vt_train_step
    mod = types.ModuleType(f"gpt_{vt.__name__}")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src.replace("vibetensor", vt.__name__), mod.__name__, "exec"), mod.__dict__)
    return vt_train_step(cfg, amp, dev, lib=vt, gpt=mod), (vt.cuda.synchronize if dev == "cuda" else (lambda: None))


def main():
    ap = argparse.ArgumentParser()
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--base", help="git revision to compare against")
    g.add_argument("--base-dir", help="a directory holding the older copy as package vtbase")
    g.add_argument("--make-base", nargs=2, metavar=("REV", "DIR"), help="only write REV as DIR/vtbase")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", default="medium", help="a train_gpt config, or tiny (medium's ops, negligible compute)")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--steps", type=int, default=10, help="steps per round")
    ap.add_argument("--rounds", type=int, default=8)
    a = ap.parse_args()
    if a.make_base:
        os.makedirs(a.make_base[1], exist_ok=True)
        make_base(*a.make_base)
        return
    base_dir = a.base_dir or tempfile.mkdtemp(prefix="vtbase-")
    if a.base:
        import atexit
        import shutil
        atexit.register(shutil.rmtree, base_dir, True)
        make_base(a.base, base_dir)
    sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks"), os.path.abspath(base_dir)]
    import vibetensor
    import vtbase
    from train_gpt import CONFIGS
    cfg = (32, 8, 8, 1, 16, 64) if a.config == "tiny" else CONFIGS[a.config]
    with open(os.path.join(ROOT, "examples", "gpt.py")) as fh:
        src = fh.read()
    new, base = build(vibetensor, cfg, a.device, a.amp, src), build(vtbase, cfg, a.device, a.amp, src)
    for step, sync in (new, base):  # warm-up: kernels compiled, plans cached, pools filled
        for _ in range(3):
            step()
        sync()
    times = ([], [])  # ms per step of each round: new, base
    for r in range(a.rounds):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            step, sync = (new, base)[k]
            t0 = time.perf_counter()
            for _ in range(a.steps):
                step()
            sync()
            times[k].append((time.perf_counter() - t0) / a.steps * 1e3)
    ratios = sorted(n / b for n, b in zip(*times))

    def med(v):
        return sorted(v)[len(v) // 2]
    print(f"{a.device} {a.config} amp={int(a.amp)}: this tree {med(times[0]):.2f} ms/step, base "
          f"{a.base or a.base_dir} {med(times[1]):.2f} (medians); this/base per round: median {med(ratios):.3f}, "
          f"min {ratios[0]:.3f}, max {ratios[-1]:.3f} ({a.rounds} rounds of {a.steps} steps); losses "
          f"{float(new[0]().item()):.6f} / {float(base[0]().item()):.6f}", flush=True)


if __name__ == "__main__":
    main()
