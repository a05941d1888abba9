"""Shared checks for op tests: forward against a numpy float64 reference, backward against central
finite differences of that reference, and PyTorch where it is installed."""
from __future__ import annotations

import numpy as np

import vibetensor as vt

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

TOL = {  # (rtol, atol) by dtype name
    "float64": (1e-7, 1e-9), "float32": (1e-4, 1e-5), "float16": (1e-2, 1e-2), "bfloat16": (3e-2, 3e-2),
}


def to_np64(t):
    return np.asarray(t.detach().to(vt.float64).cpu().numpy()) if t.dtype.is_floating_point else t.cpu().numpy()


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, msg=""):
    """actual: vt tensor or array; expected: numpy array (float64 reference)."""
    if isinstance(actual, vt.Tensor):
        dtype = dtype or actual.dtype
        actual = to_np64(actual)
    r, a = TOL.get(getattr(dtype, "name", "float64"), (1e-7, 1e-9))
    rtol = r if rtol is None else rtol
    atol = a if atol is None else atol
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{msg} shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64) if actual.dtype != bool else actual,
                               expected, rtol=rtol, atol=atol, err_msg=msg)


def numeric_grads(np_fn, arrays, upstream, eps=1e-6):
    """d/dx sum(np_fn(*arrays) * upstream) for every array, by central differences in float64."""
    grads = []
    for i, x in enumerate(arrays):
        g = np.zeros_like(x, dtype=np.float64)
        flat = g.reshape(-1)
        for k in range(x.size):
            xp = [a.copy() for a in arrays]
            xm = [a.copy() for a in arrays]
            xp[i].reshape(-1)[k] += eps
            xm[i].reshape(-1)[k] -= eps
            flat[k] = (np.sum(np_fn(*xp) * upstream) - np.sum(np_fn(*xm) * upstream)) / (2 * eps)
        grads.append(g)
    return grads


def check_op(vt_fn, np_fn, arrays, device="cpu", grad=True, dtype=vt.float64, rtol=None, atol=None,
             make=None):
    """Forward of ``vt_fn`` on tensors built from ``arrays`` (float64) vs ``np_fn``; backward vs finite
    differences. ``make(array) -> tensor`` overrides how inputs are built (e.g. non-contiguous views)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    build = make or (lambda a: vt.tensor(a, dtype=dtype, device=device))
    ts = [build(a) for a in arrays]
    if grad:
        for t in ts:
            t.requires_grad_(True)
    out = vt_fn(*ts)
    ref = np_fn(*arrays)
    assert_close(out, ref, dtype=dtype, rtol=rtol, atol=atol, msg="forward")
    if grad:
        up = np.random.randn(*np.shape(ref))
        out.backward(vt.tensor(up, dtype=out.dtype, device=out.device))
        num = numeric_grads(np_fn, arrays, up)
        for i, (t, g) in enumerate(zip(ts, num)):
            assert t.grad is not None, f"input {i} got no gradient"
            assert_close(t.grad, g, dtype=dtype, rtol=max(rtol or 0, 1e-5), atol=max(atol or 0, 1e-6),
                         msg=f"grad of input {i}")
    return out


def noncontig(a, device="cpu", dtype=vt.float64):
    """A non-contiguous tensor view holding ``a``'s values (transpose of a contiguous transpose)."""
    t = vt.tensor(np.ascontiguousarray(np.swapaxes(a, 0, -1)), dtype=dtype, device=device)
    v = t.transpose(0, -1) if a.ndim > 1 else t
    return v


FLOATS = [vt.float16, vt.bfloat16, vt.float32, vt.float64]
INTS = [vt.int8, vt.int16, vt.int32, vt.int64, vt.uint8]
ALL = FLOATS + INTS + [vt.bool]


def dtypes_on(device, dtypes):
    """The dtypes the device supports (bfloat16 on CUDA only where the installed CuPy has it)."""
    if device == "cpu":
        return dtypes
    from vibetensor.core import backend
    out = []
    for d in dtypes:
        try:
            backend.check_cuda_dtype(d)
            out.append(d)
        except TypeError:
            pass
    return out


def mk(a, device, dtype=vt.float64, rg=False):
    """A tensor of ``a`` on ``device`` (skips the test where CUDA lacks bfloat16)."""
    import pytest
    if device == "cuda" and dtype is vt.bfloat16:
        try:
            return vt.tensor(a, dtype=dtype, device=device, requires_grad=rg)
        except TypeError as e:
            pytest.skip(f"bfloat16 on CUDA: {e}")
    return vt.tensor(a, dtype=dtype, device=device, requires_grad=rg)
