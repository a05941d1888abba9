"""Helpers shared by op definitions."""
from __future__ import annotations

import operator
from collections import namedtuple

from .. import backend as _be
from ..backend import xp_of  # noqa: F401  (re-exported for op files)
from ..dispatcher import ops
from ..grad_mode import _state as _grad_state
from ...errors import ShapeError

V = ops.vt


def sum_to(g, shape):
    """Reduce a broadcast gradient ``g`` back to ``shape`` (sum over broadcast dims)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    out = V.sum(g, dims, keepdim=True) if dims else g
    if lead:
        out = V.reshape(out, shape)
    return out


def cast_grad(g, dt):
    """``g.to(dt)`` inside a backward formula. The engine runs formulas under no_grad: then the cast kernel
    alone, without the dispatcher (autocast's backward casts a gradient per residual add). With grad mode
    on (a formula called directly) the cast is dispatched and recorded."""
    if g._dtype is dt:
        return g
    if _grad_state.enabled or g._is_sharded:
        return V.to_dtype(g, dt)
    with _be.device_guard(g._device):
        return type(g)._make(_be.astype(g._data, dt.np), g._device)


def broadcast_shapes(opname, *shapes):
    """Broadcast shape with a clear ShapeError naming the shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for i, d in enumerate(s):
            j = ndim - len(s) + i
            if out[j] == 1:
                out[j] = d
            elif d != 1 and d != out[j]:
                raise ShapeError(f"{opname}: shapes {' and '.join(str(tuple(x)) for x in shapes)} do not broadcast "
                                 f"(dimension {j - ndim}: {out[j]} vs {d})")
    return tuple(out)


def wrap_dim(opname, dim, ndim):
    if type(dim) is not int:  # numpy ints and 0-d integer tensors index; 0.5 or 'a' must not pass as a dim
        try:
            dim = operator.index(dim)
        except TypeError:
            raise TypeError(f"{opname}: dim must be an int, got {dim!r} ({type(dim).__name__})") from None
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{opname}: dimension {dim} out of range for a {ndim}-d tensor (expected {-n}..{n - 1})")
    return dim % n


def wrap_dims(opname, dim, ndim):
    """None -> all dims; int or sequence -> sorted tuple of non-negative dims."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    return tuple(sorted({wrap_dim(opname, d, ndim) for d in dim}))


# torch.return_types equivalents: kernels return these and the dispatcher keeps the type
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def half_compute(a):
    """CPU float16/bfloat16 arrays computed in float32 (numpy's half math is slow or missing)."""
    if a.dtype.itemsize == 2 and a.dtype.kind in "fV" or str(a.dtype) == "bfloat16":
        return a.astype("float32"), a.dtype
    return a, None
