"""Host time of one eager GPT training step, per op name: where the Python + launch time goes.

Times every outermost dispatched op (forward and the ops a backward formula calls) and every
backward node, with perf_counter and no device sync (the step is host-bound, so host time is what
is being spent). Usage: python scripts/host_by_op.py [--config medium|tiny] [--amp] [--steps 5] [--device cpu]
[--cprofile 40 [--dump F]]
(tiny: medium's ops with negligible compute, for the framework's own overhead on the CPU). Ops that
Tensor methods send through dispatcher.call_view (view ops) do not pass D.dispatch and are not listed.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from profile_ops import vt_train_step  # noqa: E402
from train_gpt import CONFIGS  # noqa: E402

import vibetensor as vt  # noqa: E402
from vibetensor.core import autograd as A  # noqa: E402
from vibetensor.core import dispatcher as D  # noqa: E402
from vibetensor.core.ops import nn_common  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="medium")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N",
                    help="also print the N Python functions with the most own time over the steps (cProfile)")
    ap.add_argument("--dump", metavar="PATH", help="with --cprofile: also write the profile there (pstats format)")
    ap.add_argument("--gc", choices=("on", "freeze", "off"), default="on",
                    help="Python's cyclic collector during the timed steps")
    a = ap.parse_args()
    # "tiny" has medium's layers and heads (the same ops per step) with negligible compute, so on the
    # CPU its step time is the framework's host overhead alone.
    cfg = (32, 8, 8, 1, 16, 64) if a.config == "tiny" else CONFIGS[a.config]
    step = vt_train_step(cfg, a.amp, a.device)
    sync = vt.cuda.synchronize if a.device == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    sync()
    if a.gc == "freeze":
        gc.freeze()  # what exists now (model, CuPy, torch) leaves the collector's generations
    elif a.gc == "off":
        gc.disable()
    host, cpu, each = [], [], []
    for _ in range(5):  # best of 5 rounds: the lent hosts are noisy
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            t1 = time.perf_counter()
            step()
            each.append(time.perf_counter() - t1)
        host.append((time.perf_counter() - t0) / a.steps)
        cpu.append((time.process_time() - c0) / a.steps)
        sync()
    host, cpu = min(host), min(cpu)
    each.sort()
    spread = (f"per step: mean {sum(each) / len(each) * 1e3:.2f}, median {each[len(each) // 2] * 1e3:.2f}, "
              f"max {each[-1] * 1e3:.2f} ms (gc {a.gc})")

    fwd = collections.defaultdict(lambda: [0, 0.0])
    bwd = collections.defaultdict(lambda: [0, 0.0])
    depth = [0]
    orig_dispatch, orig_apply = D.dispatch, A.Node.apply
    pc = time.perf_counter

    def dispatch(op, args, kwargs):
        if depth[0]:
            return orig_dispatch(op, args, kwargs)
        depth[0] = 1
        t = pc()
        try:
            return orig_dispatch(op, args, kwargs)
        finally:
            r = fwd[op.name]
            r[0] += 1
            r[1] += pc() - t
            depth[0] = 0

    def apply(self, grads):
        t = pc()
        try:
            return orig_apply(self, grads)
        finally:
            r = bwd[self.op.name]
            r[0] += 1
            r[1] += pc() - t

    phases = collections.defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = pc()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += pc() - t
        return wrapper

    patches = [(vt.Tensor, "backward"), (vt.optim.AdamW, "step"), (vt.optim.AdamW, "zero_grad"),
               (A.AccumulateGrad, "accumulate")]
    saved = [(cls, attr, cls.__dict__.get(attr) or getattr(cls, attr)) for cls, attr in patches]
    for cls, attr, fn in saved:
        setattr(cls, attr, timed(f"{cls.__name__}.{attr}", fn))
    D.dispatch, nn_common.dispatch, A.Node.apply = dispatch, dispatch, apply
    try:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        timed = (time.perf_counter() - t0) / a.steps
        sync()
    finally:
        D.dispatch, nn_common.dispatch, A.Node.apply = orig_dispatch, orig_dispatch, orig_apply
        for cls, attr, fn in saved:
            setattr(cls, attr, fn)
    n = a.steps
    print(f"{a.config} amp={a.amp}: host {host * 1e3:.2f} ms/step (best of 5 rounds; process CPU time "
          f"{cpu * 1e3:.2f}), {timed * 1e3:.2f} ms/step while timing ops; {spread}")
    bw_nodes = sum(v[1] for v in bwd.values())
    print("phases (ms/step): " + ", ".join(f"{k} {v / n * 1e3:.2f}" for k, v in phases.items())
          + f"; backward engine outside node formulas and AccumulateGrad "
          f"{(phases['Tensor.backward'] - bw_nodes - phases['AccumulateGrad.accumulate']) / n * 1e3:.2f}")
    for title, tab in (("outermost ops (forward, optimizer, and ops run by backward formulas)", fwd),
                       ("backward nodes (inclusive of the ops their formulas run)", bwd)):
        tot = sum(v[1] for v in tab.values()) / n
        print(f"\n{title}: {tot * 1e3:.2f} ms/step, {sum(v[0] for v in tab.values()) // n} calls/step")
        print(f"{'op':34s} {'calls':>6s} {'ms/step':>8s} {'us/call':>8s}")
        for name, (c, s) in sorted(tab.items(), key=lambda kv: -kv[1][1])[:30]:
            print(f"{name:34s} {c // n:6d} {s / n * 1e3:8.2f} {s / c * 1e6:8.1f}")
    if a.cprofile:
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            step()
        sync()
        pr.disable()
        print(f"\ncProfile of {n} more steps (profiler overhead included), by own time:")
        pstats.Stats(pr).sort_stats("tottime").print_stats(a.cprofile)
        if a.dump:
            pr.dump_stats(a.dump)


if __name__ == "__main__":
    main()
