"""Host cost of one cuBLASLt GEMM through blaslt.gemm: CDLL (GIL released per call) vs PyDLL (GIL held),
and the bare cublasLtMatmul call, next to torch's mm (bf16 (256, 512) @ (512, 512)).
Usage: python scripts/gemm_host.py (a CUDA GPU with PyTorch)"""
import ctypes
import time

import numpy as np
import torch

import vibetensor as vt
from vibetensor.cuda import blaslt

a = vt.tensor(np.random.randn(256, 512), dtype=vt.bfloat16, device="cuda")
b = vt.tensor(np.random.randn(512, 512), dtype=vt.bfloat16, device="cuda")
ta = torch.randn(256, 512, device="cuda", dtype=torch.bfloat16)
tb = torch.randn(512, 512, device="cuda", dtype=torch.bfloat16)


def t(fn, n=3000):
    for _ in range(200):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


calls = {"n": 0}
orig = blaslt.gemm


def counting(*a_, **k):
    calls["n"] += 1
    return orig(*a_, **k)


blaslt.gemm = counting
vt.matmul(a, b)
blaslt.gemm = orig
print("blaslt.gemm calls per vt.matmul:", calls["n"])
lib_c = blaslt._lib
path = lib_c._name
lib_py = ctypes.PyDLL(path)
for name in ("cublasLtMatmul", "cublasLtMatmulDescSetAttribute"):
    getattr(lib_py, name).argtypes = getattr(lib_c, name).argtypes
for rnd in range(2):
    blaslt._lib = lib_c
    r_c = t(lambda: vt.matmul(a, b))
    blaslt._lib = lib_py
    r_p = t(lambda: vt.matmul(a, b))
    r_t = t(lambda: ta @ tb)
    print(f"round {rnd}: vt.matmul CDLL {r_c:.2f} us | PyDLL {r_p:.2f} us | torch mm {r_t:.2f} us")
blaslt._lib = lib_c
# the bare call: the plan of the last GEMM, called directly
key, plan = next((k, p) for k, p in blaslt._plans.items() if p)
hw = blaslt._handles[key[1]]
import cupy as cp
ca, cb = a._data, b._data
cc = cp.ndarray((256, 512), dtype=ca.dtype)
one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
desc, la, lb, lc, algo = plan[:5]
sp = cp.cuda.get_current_stream().ptr
for lib, nm in ((lib_c, "CDLL"), (lib_py, "PyDLL")):
    f = lib.cublasLtMatmul
    args = (hw[0], desc, ctypes.byref(one), cb.data.ptr, la, ca.data.ptr, lb, ctypes.byref(zero), cc.data.ptr, lc,
            cc.data.ptr, lc, algo, hw[1].ptr, blaslt._WORKSPACE, sp)
    print(nm, "bare cublasLtMatmul", f"{t(lambda: f(*args)):.2f} us")
