"""Host cost of one GEMM call (and one cast) hot, back to back, and cold, with Python work between calls
that evicts the libraries' code and data from the CPU caches: vt against torch, bf16 256 x 256.
A GEMM costs ~3x more host time inside a training step than in a tight loop; this shows whether that
is ours or every framework's. Usage: python scripts/gemm_cold.py (a CUDA GPU with PyTorch)"""
import time

import numpy as np
import torch

import vibetensor as vt
from vibetensor.cuda import blas
from vibetensor.cuda import kernels as K

bf = vt.bfloat16.np
S = 256
cp = vt.core.backend.cupy_module()
xh, wh, bh = cp.random.rand(S, S).astype(bf), cp.random.rand(S, S).astype(bf), cp.zeros(S, dtype=bf)
tx, tw = (torch.rand(S, S, device="cuda", dtype=torch.bfloat16) for _ in range(2))
tb = torch.zeros(S, device="cuda", dtype=torch.bfloat16)
junk = [dict(a=i, b=str(i), c=[i] * 8) for i in range(20000)]


def pollute(n):
    s = 0
    for d in junk[:n]:
        s += d["a"] + len(d["b"]) + d["c"][3]
    return s


CALLS = (("vt blas.linear_bias", lambda: blas.linear_bias(xh, wh, bh)),
         ("torch F.linear", lambda: torch.nn.functional.linear(tx, tw, tb)),
         ("vt cast kernel", lambda: K.cast(xh, np.float32)), ("torch .float()", lambda: tx.float()))
for _, fn in CALLS * 200:
    fn()
torch.cuda.synchronize()
for n_junk in (0, 200, 2000, 20000):
    res = []
    for name, fn in CALLS:
        best = 1e9
        for _ in range(5):
            tot = 0.0
            for _ in range(300):
                pollute(n_junk)
                t0 = time.perf_counter()
                fn()
                tot += time.perf_counter() - t0
            torch.cuda.synchronize()
            best = min(best, tot / 300 * 1e6)
        res.append(f"{name} {best:6.2f} us")
    print(f"Python work between calls {n_junk:6d}: " + "  ".join(res), flush=True)
