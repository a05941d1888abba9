"""Where the host time of small eager ops goes: cProfile of each host_step.py op and the tiny GPT step,
plus the raw CuPy floor for the same calls. Usage: python scripts/profile_host.py [--device cuda] [--out DIR]"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import host_step  # noqa: E402

import vibetensor as vt  # noqa: E402


def timeit(fn, n, sync):
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/prof"))
    ap.add_argument("--iters", type=int, default=3000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sync = vt.cuda.synchronize if a.device == "cuda" else (lambda: None)
    if a.device == "cuda":
        import cupy as cp
        x, y = cp.random.randn(32, 32, dtype=cp.float32), cp.random.randn(32, 32, dtype=cp.float32)
        o = cp.empty_like(x)
        floors = [("cupy x+y", lambda: x + y), ("cupy add out=", lambda: cp.add(x, y, out=o)),
                  ("cupy x*0.5", lambda: x * 0.5), ("cupy reshape", lambda: x.reshape(16, 64)),
                  ("cupy sum(1)", lambda: x.sum(1)), ("cupy x@y", lambda: x @ y),
                  ("cupy empty", lambda: cp.empty((32, 32), cp.float32))]
        for name, fn in floors:
            timeit(fn, 200, sync)
            print(f"{name:24s} {timeit(fn, a.iters, sync) * 1e6:8.2f} us")
    cases = [(n, f) for n, f, _ in host_step.op_pairs(a.device)]
    vt_step, _, _ = host_step.gpt_steps(a.device)
    cases.append(("gpt_step", vt_step))
    for name, fn in cases:
        n = 100 if name == "gpt_step" else a.iters
        for _ in range(20):
            fn()
        sync()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            fn()
        sync()
        pr.disable()
        s = io.StringIO()
        st = pstats.Stats(pr, stream=s).sort_stats("tottime")
        st.print_stats(40)
        if name == "gpt_step":   # who calls the CuPy entry points that cost the most
            st.print_callers("ascontiguousarray|basic.py.*empty|_malloc|astype|concatenate|array}|sum'")
        fname = os.path.join(a.out, "prof_" + "".join(c if c.isalnum() else "_" for c in name) + ".txt")
        with open(fname, "w") as f:
            f.write(f"# {name}: {n} calls\n" + s.getvalue())
        print(f"{name}: {timeit(fn, n, sync) * 1e6:.2f} us/call (unprofiled)")


if __name__ == "__main__":
    main()
