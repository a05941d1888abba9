"""Helpers shared by the reduction op files: dim normalisation, accumulation dtypes, broadcasting a
reduced gradient back."""
from __future__ import annotations

import numpy as np

from ._util import V, wrap_dim
from .elementwise_util import is_half
from ...errors import DTypeError

F32 = np.dtype(np.float32)


def axes(name, dim, ndim):
    """``None`` for a full reduction, else a sorted tuple of non-negative axes.

    ``dim=None`` and ``dim=()`` reduce every dim (as PyTorch); on a 0-d tensor dims 0/-1 name the
    tensor itself, so that is a full reduction too."""
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        if len(dim) == 0:
            return None
        ds = [wrap_dim(name, d, ndim) for d in dim]
        if len(set(ds)) != len(ds):
            raise ValueError(f"{name}: dim {tuple(dim)} names a dimension more than once")
    else:
        ds = [wrap_dim(name, dim, ndim)]
    if ndim == 0:
        return None
    return tuple(sorted(ds))


def one_axis(name, dim, ndim):
    """A single dim (cumsum, argmax, max(dim)): a non-negative int, 0 for a 0-d tensor."""
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{name}: dim must be a single int, got {dim!r}")
    return wrap_dim(name, dim, ndim)


def arg(ctx, i, name, default=None):
    """Argument ``name`` of a recorded call: positional index ``i`` or keyword."""
    if len(ctx.args) > i:
        return ctx.args[i]
    return ctx.kwargs.get(name, default)


def count(shape, ax):
    n = 1
    for i, s in enumerate(shape):
        if ax is None or i in ax:
            n *= s
    return n


def kept_shape(shape, ax):
    return tuple(1 if ax is None or i in ax else s for i, s in enumerate(shape))


def reduced_shape(shape, ax, keepdim):
    if keepdim:
        return kept_shape(shape, ax)
    return tuple(s for i, s in enumerate(shape) if not (ax is None or i in ax))


def expand_back(g, shape, ax, keepdim):
    """Broadcast a reduced gradient back to the input's shape."""
    shape = tuple(shape)
    if not keepdim:
        g = V.reshape(g, kept_shape(shape, ax))
    return V.expand(g, shape)


def acc_dtype(a, dtype=None, int_to_int64=True):
    """(accumulation dtype, output dtype) for a sum-like reduction: bool/int -> int64 (as PyTorch);
    float16/bfloat16 accumulate in float32 and return the input dtype."""
    out = dtype.np if dtype is not None else a.dtype
    if dtype is None and int_to_int64 and a.dtype.kind in "biu":
        out = np.dtype(np.int64)
    acc = F32 if is_half(out) else out
    return acc, out


def require_float(name, a, hint=""):
    if a.dtype.kind not in "fV":
        raise DTypeError(f"{name}: expected a floating-point tensor, got {a.dtype}; convert it with .float()"
                         f"{hint} first")


def nonempty(name, a, ax):
    """max/min-like reductions have no identity: refuse a reduction over a zero-size dim."""
    if a.size == 0:
        dims = range(a.ndim) if ax is None else ax
        for d in dims:
            if a.shape[d] == 0:
                raise IndexError(f"{name}: expected reduction dim {d} to have non-zero size (input shape "
                                 f"{tuple(a.shape)}); specify a dim of non-zero size")
        if ax is None:
            raise IndexError(f"{name}: cannot reduce an empty tensor of shape {tuple(a.shape)} without a dim")
