"""Helpers shared by the fused-kernel GPU tests: run a function on CUDA tensors through the fused
kernels and through the generic kernels in float64, and compare outputs and gradients."""
import numpy as np

import vibetensor as vt
from vibetensor.core import dispatcher as D


F = vt.nn.functional


def _fused():
    from vibetensor.cuda import fused
    return fused


def _run(fn, arrays, dtype, grad=True, up_dtype=None):
    """Run fn on CUDA tensors; returns (output, grads) as float64 numpy. The upstream gradient is
    rounded to ``up_dtype`` first when given."""
    ts = [vt.tensor(a, dtype=dtype, device="cuda", requires_grad=grad) for a in arrays]
    out = fn(*ts)
    grads = []
    if grad:
        up = vt.tensor(np.random.RandomState(1).randn(*out.shape), dtype=up_dtype or out.dtype,
                       device="cuda").to(out.dtype)
        out.backward(up)
        grads = [t.grad.to(vt.float64).cpu().numpy() for t in ts]
    return out.detach().to(vt.float64).cpu().numpy(), grads


def _rounded(a, dtype):
    return vt.tensor(a, dtype=dtype).to(vt.float64).numpy()


def _compare(fn, arrays, dtype, rtol, atol, op, exact_inputs=False):
    """``exact_inputs``: the float64 reference gets the inputs and upstream gradient rounded to ``dtype``
    (long float16/bfloat16 dot products: the inputs' rounding, not the kernel, would dominate)."""
    f = _fused()
    if exact_inputs:
        arrays = [_rounded(a, dtype) for a in arrays]
    before = f.FUSED_CALLS[op]
    out_f, g_f = _run(fn, arrays, dtype)
    assert f.FUSED_CALLS[op] > before, f"fused path for {op} did not run"
    cuda_kernels = {}
    for name in f._TABLE:
        o = D.REGISTRY.get(f"vt::{name}")
        if o is not None:
            cuda_kernels[name] = o.kernels[D.Key.CUDA]
            o.kernels[D.Key.CUDA] = o.kernels[D.Key.CPU]
    try:
        out_r, g_r = _run(fn, arrays, vt.float64, up_dtype=dtype if exact_inputs else None)  # generic, float64
    finally:
        for name, k in cuda_kernels.items():
            D.REGISTRY[f"vt::{name}"].kernels[D.Key.CUDA] = k
    np.testing.assert_allclose(out_f, out_r, rtol=rtol, atol=atol)
    for a, b in zip(g_f, g_r):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


TOL = {vt.float32: (2e-4, 2e-5), vt.float16: (2e-2, 2e-2), vt.bfloat16: (6e-2, 6e-2)}
DTYPES = [vt.float32, vt.float16, vt.bfloat16]
