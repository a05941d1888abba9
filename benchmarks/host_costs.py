"""Host cost of the pieces an eager CUDA op is made of (CuPy calls, our dispatcher, autograd), next to
PyTorch's whole op, on tiny tensors so that only host time counts. Run on a GPU machine:

    python benchmarks/host_costs.py [--iters 3000]

Each figure is the best of 5 loops of --iters calls, in microseconds per call, device synchronized
at the end of each loop (the GPU never becomes the bottleneck at 32x32).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from host_step import best_of  # noqa: E402


def bench(fn, iters, sync):
    return best_of(fn, iters, sync) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=3000)
    args = ap.parse_args()
    import cupy as cp
    import numpy as np
    import vibetensor as vt
    from vibetensor.cuda import blas, blaslt
    from vibetensor.cuda import kernels as K
    F = vt.nn.functional
    sync = cp.cuda.Device().synchronize
    n = args.iters
    a = cp.random.rand(32, 32, dtype=cp.float32)
    b = cp.random.rand(32, 32, dtype=cp.float32)
    raw = cp.RawKernel(r'extern "C" __global__ void k(float* x, long long n) { }', "k")
    rows = []

    def row(name, fn):
        rows.append((name, bench(fn, n, sync)))
        print(f"{name:44s} {rows[-1][1]:8.2f} us", flush=True)

    vt.zeros(1, device="cuda")  # first CUDA use: vt's allocator is installed
    print("-- CuPy building blocks")
    row("cupy empty(32,32)", lambda: cp.empty((32, 32), dtype=cp.float32))
    row("cupy ndarray((32,32)) (vt's observed allocator)", lambda: cp.ndarray((32, 32), dtype=cp.float32))
    observed = cp.cuda.get_allocator()
    cp.cuda.set_allocator(cp.get_default_memory_pool().malloc)
    row("cupy ndarray((32,32)) (CuPy's pool, no vt hook)", lambda: cp.ndarray((32, 32), dtype=cp.float32))
    cp.cuda.set_allocator(observed)
    row("cupy a + b", lambda: a + b)
    row("cupy ElementwiseKernel-backed erf", lambda: cp.sqrt(a))
    row("cupy a.astype(same, copy=False)", lambda: a.astype(cp.float32, copy=False))
    row("cupy ascontiguousarray (already)", lambda: cp.ascontiguousarray(a))
    row("cupy a.sum()", lambda: a.sum())
    row("cupy RawKernel launch (2 args)", lambda: raw((1,), (32,), (a, cp.int64(1024))))
    six = cp.RawKernel(r'extern "C" __global__ void k6(float* a, float* b, float* c, long long n, float s, int op) '
                       r'{ }', "k6")
    args6 = (a, b, a, cp.int64(1024), cp.float32(1), cp.int32(0))
    row("cupy RawKernel launch (6 args)", lambda: six((1,), (32,), args6))
    row("cupy RawModule get_function", lambda: K._mod().get_function("gelu_fwd<float>"))
    row("cupy runtime.getDevice", lambda: cp.cuda.runtime.getDevice())
    row("cupy get_current_stream", lambda: cp.cuda.get_current_stream())
    row("numpy int64 scalar", lambda: np.int64(5))
    lt = blaslt.enabled
    blaslt.enabled = False
    row("blas.matmul 32x32 (ctypes cublasGemmEx)", lambda: blas.matmul(a, b))
    blaslt.enabled = lt
    row("blas.matmul 32x32 (cuBLASLt, cached plan)", lambda: blas.matmul(a, b))
    row("cupy matmul 32x32", lambda: cp.matmul(a, b))
    row("K.gelu_fwd 32x32 (RawModule)", lambda: K.gelu_fwd(a))
    bh = b.astype(K._BF16)
    row("K.binary float32 + bfloat16 32x32 (RawModule)", lambda: K.binary(a, bh, 0))
    mins, K.BINARY_MIN = K.BINARY_MIN, {d: 0 for d in K.BINARY_MIN}
    row("K.binary float32 + float32 32x32 (past BINARY_MIN)", lambda: K.binary(a, b, 0))
    K.BINARY_MIN = mins

    print("-- vibetensor ops")
    x = vt.randn(32, 32, device="cuda")
    y = vt.randn(32, 32, device="cuda")
    w = vt.randn(32, 32, device="cuda")
    bias = vt.randn(32, device="cuda")
    xg = vt.randn(32, 32, device="cuda", requires_grad=True)
    row("vt add", lambda: x + y)
    row("vt add (requires_grad: records a node)", lambda: xg + y)
    from vibetensor.core import dispatcher as D
    xh = vt.randn(32, 32, device="cuda").to(vt.bfloat16)
    row("vt add float32 + bfloat16 (one kernel)", lambda: x + xh)
    add_op = D.REGISTRY["vt::add"]
    mixed, add_op.mixed_cuda = add_op.mixed_cuda, None
    row("vt add float32 + bfloat16 (cast, then add)", lambda: x + xh)
    add_op.mixed_cuda = mixed
    row("vt view", lambda: x.view(16, 64))
    row("vt gelu", lambda: F.gelu(x))
    row("vt layer_norm", lambda: F.layer_norm(x, (32,)))
    row("vt linear", lambda: F.linear(x, w, bias))
    row("vt matmul", lambda: x @ w)

    def fb():
        F.linear(xg, w, bias).sum().backward()
    row("vt linear+sum fwd/bwd", fb)
    blaslt.enabled = False
    row("vt linear (no cuBLASLt)", lambda: F.linear(x, w, bias))
    row("vt matmul (no cuBLASLt)", lambda: x @ w)
    row("vt linear+sum fwd/bwd (no cuBLASLt)", fb)
    blaslt.enabled = lt

    try:
        import torch
    except ImportError:
        return
    print("-- torch ops")
    tsync = torch.cuda.synchronize
    tx, ty, tw, tb = (torch.randn(32, 32, device="cuda") for _ in range(4))
    tb = tb[0]
    txg = torch.randn(32, 32, device="cuda", requires_grad=True)
    th = torch.randn(32, 32, device="cuda", dtype=torch.bfloat16)
    for name, fn in [("torch add", lambda: tx + ty), ("torch add (requires_grad)", lambda: txg + ty),
                     ("torch add float32 + bfloat16", lambda: tx + th),
                     ("torch view", lambda: tx.view(16, 64)), ("torch gelu", lambda: torch.nn.functional.gelu(tx)),
                     ("torch layer_norm", lambda: torch.nn.functional.layer_norm(tx, (32,))),
                     ("torch linear", lambda: torch.nn.functional.linear(tx, tw, tb)),
                     ("torch matmul", lambda: tx @ tw),
                     ("torch linear+sum fwd/bwd", lambda: torch.nn.functional.linear(txg, tw, tb).sum().backward())]:
        print(f"{name:44s} {bench(fn, n, tsync):8.2f} us", flush=True)


if __name__ == "__main__":
    main()
