"""All-reduce bandwidth: our ring vs the native collective, in the same run.

    mpiexec -n 2 python benchmarks/allreduce.py                 # CPU: ring vs MPI_Allreduce (mpi4py)
    mpiexec -n 4 python benchmarks/allreduce.py --max-bytes 256M
    mpiexec -n 2 python benchmarks/allreduce.py --backend ipc --device cuda   # GPU: ring over CUDA IPC
    python benchmarks/allreduce.py --backend local               # one process, VT_CPU_DEVICES / all GPUs
    python benchmarks/allreduce.py --backend nccl --device cuda  # NCCL world size 1 (copy-speed reference)

For each size (float32, 4 KiB .. --max-bytes): time per call, algbw = bytes / time and busbw =
algbw * 2(n-1)/n for our ring (``all_reduce(algorithm="ring")``), the native path through the same
API (``algorithm="native"``: MPI_Iallreduce / NCCL / local copies) and, on CPU with MPI, raw
``mpi4py Allreduce`` (the reference); the last column is ring busbw / reference busbw.
Times: the slowest rank's median over repetitions, best of --rounds interleaved rounds (the
machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import vibetensor as vt  # noqa: E402


def parse_bytes(s: str) -> int:
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1]]) if s and s[-1] in mult else int(s)


def human(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:g} {unit}"
    return f"{n} B"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="auto", choices=["auto", "mpi", "nccl", "ipc", "local"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--devices", default=None,
                    help="local backend: comma-separated devices, e.g. cuda:0,cuda:0 (ranks sharing one GPU)")
    ap.add_argument("--min-bytes", default="4K")
    ap.add_argument("--max-bytes", default=None, help="default 64M on CPU, 1G on GPU (bounded by memory)")
    ap.add_argument("--iters", type=int, default=0, help="repetitions per size (0: adaptive, ~0.3 s per size)")
    ap.add_argument("--segment-bytes", default=None, help="ring segment size (tuning)")
    ap.add_argument("--depth", type=int, default=None, help="ring in-flight window (tuning)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size (best median kept)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw mpi4py Allreduce reference")
    ap.add_argument("--no-cma", action="store_true",
                    help="shm ring: all-gather steps through the slots too, not pushed with process_vm_writev")
    a = ap.parse_args()

    dist = vt.collectives
    from vibetensor.collectives import ring as ring_mod
    if a.segment_bytes:
        ring_mod.SEGMENT_BYTES = parse_bytes(a.segment_bytes)
    if a.depth:
        ring_mod.DEPTH = a.depth
    if a.no_cma:
        from vibetensor.collectives.transport import shm
        shm.USE_CMA = False
    backend = a.backend
    if backend == "auto":
        backend = "local" if "PMI_RANK" not in os.environ and "OMPI_COMM_WORLD_RANK" not in os.environ else "auto"
    devices = a.devices.split(",") if a.devices else None
    g = dist.init_process_group(backend, devices=devices)
    n = g.size()
    nloc = len(g.local_ranks)
    devs = g._host.devices() if g.backend == "local" else [vt.device(a.device if a.device == "cpu" else
                                                                       (g._device or "cuda:0"))]
    is_root = g.rank() == 0
    mpi_comm = getattr(g._host, "comm", None)
    nccl1 = None
    if a.device == "cuda":  # copy-speed reference: NCCL all_reduce at world size 1 (out of place)
        try:
            from cupy.cuda import nccl
            nccl1 = nccl.NcclCommunicator.initAll([devs[0].index])[0]
        except Exception as e:  # no NCCL in this CuPy build
            print(f"# no NCCL reference: {e}", file=sys.stderr)
    raw_ok = mpi_comm is not None and a.device == "cpu" and not a.no_raw
    max_bytes = parse_bytes(a.max_bytes) if a.max_bytes else (64 << 20 if a.device == "cpu" else 1 << 30)
    sizes = []
    s = parse_bytes(a.min_bytes)
    while s <= max_bytes:
        sizes.append(s)
        s *= 4 if s < (1 << 20) else 2

    def sync():
        if a.device == "cuda":
            cp = vt.core.backend.cupy_module()
            for d in devs:
                with cp.cuda.Device(d.index):
                    cp.cuda.get_current_stream().synchronize()

    def slowest(t):
        if mpi_comm is None:
            return t
        from mpi4py import MPI
        return mpi_comm.allreduce(t, op=MPI.MAX)

    def bench(fn, nbytes):
        for _ in range(2):
            fn()
        sync()
        iters = a.iters
        if not iters:
            t0 = time.perf_counter()
            fn()
            sync()
            one = slowest(time.perf_counter() - t0)
            iters = int(max(3, min(100, 0.1 / max(one, 1e-6))))
        ts = []
        for _ in range(iters):
            if mpi_comm is not None:
                mpi_comm.Barrier()
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return slowest(statistics.median(ts))

    if is_root:
        import datetime
        print(f"# allreduce: world={n} ({nloc} rank(s)/process) backend={g.backend} device={a.device} "
              f"transport={(g._dev_transport or g._host).name if a.device == 'cpu' else g.backend} "
              f"segment={human(ring_mod.SEGMENT_BYTES)} depth={ring_mod.DEPTH}")
        print(f"# host={platform.node()} cpus={os.cpu_count()} python={platform.python_version()} "
              f"numpy={np.__version__} date={datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        ref = "mpi4py Allreduce" if raw_ok else ("NCCL world-1 all_reduce (copy speed)" if nccl1 else "native")
        print(f"# busbw = algbw * 2(n-1)/n; ratio = ring busbw / {ref} busbw")
        hdr = f"{'size':>10} | {'ring us':>9} {'algbw':>7} {'busbw':>7} | {'native us':>9} {'busbw':>7}"
        if raw_ok or nccl1 is not None:
            hdr += f" | {'mpi us' if raw_ok else 'nccl1 us':>9} {'busbw':>7}"
        print(hdr + f" | {'ratio':>5}")
    fac = 2 * (n - 1) / n if n > 1 else 1.0
    for nbytes in sizes:
        count = nbytes // 4
        ts = [vt.zeros((count,), dtype=vt.float32, device=d) for d in devs]
        arg = ts if nloc > 1 else ts[0]
        fns = {"ring": lambda: g.all_reduce(arg, algorithm="ring"),
               "native": lambda: g.all_reduce(arg, algorithm="native")}
        if raw_ok:
            from mpi4py import MPI
            x = np.zeros(count, np.float32)
            fns["raw"] = lambda: mpi_comm.Allreduce(MPI.IN_PLACE, [x, MPI.FLOAT])
        if nccl1 is not None:
            cp = vt.core.backend.cupy_module()
            from cupy.cuda import nccl
            xs, ys = ts[0]._data, cp.empty_like(ts[0]._data)
            fns["raw"] = lambda: nccl1.allReduce(xs.data.ptr, ys.data.ptr, count, nccl.NCCL_FLOAT32, nccl.NCCL_SUM,
                                                  cp.cuda.get_current_stream().ptr)
        # interleaved rounds, best median per method: robust against load from other processes
        best = {k: float("inf") for k in fns}
        for _ in range(a.rounds):
            for k, fn in fns.items():
                best[k] = min(best[k], bench(fn, nbytes))
        t_ring, t_nat = best["ring"], best["native"]
        row = (f"{human(nbytes):>10} | {t_ring * 1e6:9.1f} {nbytes / t_ring / 1e9:7.3f} "
               f"{nbytes / t_ring / 1e9 * fac:7.3f} | {t_nat * 1e6:9.1f} {nbytes / t_nat / 1e9 * fac:7.3f}")
        ref_t = t_nat
        if "raw" in best:
            t_raw = best["raw"]
            row += f" | {t_raw * 1e6:9.1f} {nbytes / t_raw / 1e9 * fac:7.3f}"
            ref_t = t_raw
        if is_root:
            print(row + f" | {ref_t / t_ring:5.2f}", flush=True)
    shm_tr = getattr(g, "_shm", None)
    if is_root and shm_tr is not None:
        print(f"# ring transport: shm, all-gather steps {'pushed (process_vm_writev)' if shm_tr.push else 'via slots'}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
