"""dtype / device conversion, clone, contiguous."""
from __future__ import annotations

from .. import backend as _be
from ..dispatcher import defop
from ._util import V, cast_grad, xp_of


@defop("to_dtype")
def to_dtype(a, dtype):
    if _be.is_cuda_array(a):
        _be.check_cuda_dtype(dtype, "to")
    return _be.astype(a, dtype.np)


@to_dtype.def_backward
def _(ctx, g):
    return cast_grad(g, ctx.args[0].dtype)


@defop("clone")
def clone(a):
    if _be.is_cuda_array(a) and a.flags.c_contiguous and a.size:
        # a device-to-device memcpy runs at copy-engine speed; CuPy's copy() is an elementwise kernel
        out = xp_of(a).empty_like(a)
        out.data.copy_from_device_async(a.data, a.nbytes)
        return out
    return a.copy()


@clone.def_backward
def _(ctx, g):
    return g


@defop("contiguous")
def contiguous(a):
    return xp_of(a).ascontiguousarray(a)


@contiguous.def_backward
def _(ctx, g):
    return g


@defop("to_device", raw=True)
def to_device(t, dev):
    """Copy across devices (CPU <-> CUDA, CUDA <-> CUDA peer copy, virtual CPU devices)."""
    from ..tensor import Tensor
    src = t._data
    if dev.type == "cpu":
        arr = _be.to_numpy(src)
        if t._device.type == "cpu":
            arr = arr.copy()  # virtual CPU devices own separate memory
    else:
        arr = _be.asarray_on(src, dev)
        if arr is src:
            arr = src.copy()
    return Tensor._make(arr, dev)


@to_device.def_backward
def _(ctx, g):
    return V.to_device(g, ctx.args[0].device)
