"""Helpers shared by the extra-ops tests (vt and torch operands, tolerances, gradient comparison)."""

import numpy as np
import pytest

import vibetensor as vt
from tests.opcheck import to_np64

torch = pytest.importorskip("torch")

R = np.random.randn
FLOATS = [vt.float16, vt.bfloat16, vt.float32, vt.float64]
INTS = [vt.int8, vt.int16, vt.int32, vt.int64, vt.uint8]
TOL = {"float16": (2e-3, 2e-3), "bfloat16": (1.6e-2, 1.6e-2), "float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}
TDT = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
       "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
       "bool": torch.bool}


def V(a, device="cpu", dtype=vt.float64, rg=False):
    if device == "cuda" and dtype is vt.bfloat16:
        from vibetensor.core import backend
        try:
            backend.check_cuda_dtype(dtype)
        except TypeError as e:
            pytest.skip(f"bfloat16 on CUDA: {e}")
    return vt.tensor(np.asarray(a), dtype=dtype, device=device, requires_grad=rg)


def T(a, dtype=torch.float64, rg=False):
    t = torch.from_numpy(np.array(a)).to(dtype)
    return t.requires_grad_(rg) if rg else t


def tnp(t):
    """A torch result as numpy (float64 for floats)."""
    t = t.detach()
    return t.double().numpy() if t.is_floating_point() else t.numpy()


def close(v, t, dtype=None, rtol=None, atol=None, msg=""):
    """vt tensor ``v`` equals torch tensor (or array) ``t``: shape, dtype (when a torch tensor), values."""
    if isinstance(t, torch.Tensor):
        assert str(t.dtype).replace("torch.", "") == v.dtype.name, f"{msg} dtype {v.dtype.name} vs {t.dtype}"
        t = tnp(t)
    a = to_np64(v)
    assert a.shape == np.shape(t), f"{msg} shape {a.shape} vs {np.shape(t)}"
    r, at = TOL.get((dtype or v.dtype).name, (0, 0))
    np.testing.assert_allclose(a, t, rtol=rtol if rtol is not None else r, atol=atol if atol is not None else at,
                               err_msg=msg, equal_nan=True)


def noncontig_v(a, device="cpu", dtype=vt.float64, rg=False):
    """A non-contiguous view holding ``a`` (transpose of a contiguous transpose); a leaf when rg."""
    base = V(np.ascontiguousarray(np.swapaxes(a, 0, -1)), device, dtype, rg)
    v = base.transpose(0, -1)
    assert a.ndim < 2 or not v.is_contiguous()
    return base, v


def rand_of(shape, dt, scale=3):
    a = R(*shape) * scale
    if dt is vt.bool:
        return a > 0
    if dt is vt.uint8:
        return np.abs(a).astype(np.uint8)
    if not dt.is_floating_point:
        return np.round(a).astype(dt.np)
    return a


def grads_match(vt_fn, torch_fn, arrays, device="cpu", rtol=1e-9, atol=1e-11):
    """Forward and every input's gradient of ``vt_fn`` equal ``torch_fn``'s (float64, random upstream)."""
    vs = [V(a, device, rg=True) for a in arrays]
    ts = [T(a, rg=True) for a in arrays]
    vo, to = vt_fn(*vs), torch_fn(*ts)
    close(vo, to, msg="forward", rtol=rtol, atol=atol)
    up = R(*to.shape)
    vo.backward(V(up, device))
    to.backward(T(up))
    for i, (v, t) in enumerate(zip(vs, ts)):
        assert v.grad is not None, f"input {i} got no gradient"
        close(v.grad, t.grad, rtol=rtol, atol=atol, msg=f"grad {i}")
