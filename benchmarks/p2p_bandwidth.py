"""Fabric data movement vs PyTorch, measured in the same run (ratios vt/torch of GB/s: above 1.0 is
faster than PyTorch).

    python benchmarks/p2p_bandwidth.py [--size-mb 256] [--reps 10]

* peer copy i -> j of one buffer (vt ``t.to("cuda:j")`` through Fabric's recorded move vs torch
  ``x.to("cuda:j")``), every ordered GPU pair;
* Shard(0) -> Replicate redistribute (an in-process all-gather) over all local devices vs the same
  copies + cat in torch.
Without GPUs it runs on virtual CPU devices (VT_CPU_DEVICES, default 4) against torch CPU copies.
"""
from __future__ import annotations

import argparse
import os
import time



def _best(fn, reps, sync):
    fn()
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=256)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    os.environ.setdefault("VT_CPU_DEVICES", "4")
    import torch
    import vibetensor as vt
    from vibetensor.core import backend
    from vibetensor.fabric import Replicate, Shard, distribute_tensor, init_device_mesh, layout
    n_el = int(args.size_mb * 1e6) // 4
    gpu = backend.cuda_available() and torch.cuda.is_available()
    if gpu:
        n = backend.cuda_device_count()
        devs = [f"cuda:{i}" for i in range(n)]
        cp = backend.cupy_module()

        def sync():
            for i in range(n):
                cp.cuda.Device(i).synchronize()
                torch.cuda.synchronize(i)
    else:
        n = int(os.environ["VT_CPU_DEVICES"])
        devs = [f"cpu:{i}" for i in range(n)]

        def sync():
            pass
    kind = "cuda" if gpu else "cpu"
    print(f"# {n} {kind} device(s), {n_el * 4 / 1e6:.0f} MB buffers, best of {args.reps}")
    gb = n_el * 4 / 1e9
    if gpu and n > 1:
        print("pair      vt GB/s  torch GB/s  ratio")
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                x = vt.ones(n_el, device=devs[i])
                tx = torch.ones(n_el, device=devs[i])
                tv = _best(lambda: layout.move(x, vt.device(devs[j])), args.reps, sync)
                tt = _best(lambda: tx.to(devs[j]), args.reps, sync)
                print(f"{i}->{j}      {gb / tv:7.1f}  {gb / tt:10.1f}  {tt / tv:5.2f}")
    if gpu:  # local device-to-device copy on each GPU: the ceiling every peer figure is read against
        print("local     vt GB/s  torch GB/s  ratio   (clone on one device: read + write)")
        for i in range(n):
            x = vt.ones(n_el, device=devs[i])
            tx = torch.ones(n_el, device=devs[i])
            tv = _best(lambda: x.clone(), args.reps, sync)
            tt = _best(lambda: tx.clone(), args.reps, sync)
            print(f"{i}         {2 * gb / tv:7.1f}  {2 * gb / tt:10.1f}  {tt / tv:5.2f}")
    if n < 2:
        print("all-gather: needs 2 or more devices (one GPU here; run without GPUs for virtual CPU devices)")
        return
    mesh = init_device_mesh(kind, (n,))
    x = vt.ones(n_el, device=mesh.devices[0])
    d = distribute_tensor(x, mesh, [Shard(0)])
    tdevs = [str(dv) if gpu else "cpu" for dv in mesh.devices]
    tparts = [torch.ones(len(t._data), device=tdevs[k]) for k, t in enumerate(d.to_local())]

    def torch_gather():
        for dv in tdevs:
            torch.cat([p.to(dv) for p in tparts])
    tv = _best(lambda: d.redistribute(mesh, [Replicate()]), args.reps, sync)
    tt = _best(torch_gather, args.reps, sync)
    print(f"all-gather Shard(0)->Replicate over {n}: vt {gb * (n - 1) / tv:.1f} GB/s, torch "
          f"{gb * (n - 1) / tt:.1f} GB/s (bytes to each device / time), ratio {tt / tv:.2f}")


if __name__ == "__main__":
    main()
