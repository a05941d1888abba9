"""sort, argsort, topk, unique, nonzero, one_hot."""
from __future__ import annotations

import numpy as np

from ..dispatcher import defop
from ._util import ValuesIndices, wrap_dim, xp_of
from .shape_util import defop_sig, params
from ...errors import ShapeError


def _argsort(xp, a, d, descending):
    """Stable argsort along ``d``; NaN sorts as the largest value (PyTorch and numpy agree).

    Descending keeps equal elements in their original order: a stable ascending sort of the reversed
    axis, read backwards, with indices mapped back (n - 1 - i)."""
    on_cpu = xp is np
    if a.dtype.name == "bfloat16" and not on_cpu:
        a = a.astype("float32")
    kw = {"kind": "stable"} if on_cpu else {}  # CuPy's argsort is always stable and takes no kind
    if not descending:
        return xp.argsort(a, axis=d, **kw)
    n = a.shape[d]
    r = xp.flip(xp.argsort(xp.flip(a, d), axis=d, **kw), d)
    return (n - 1) - r


@defop_sig("sort", save=(0,))
def sort(a, dim=-1, descending=False, stable=False):
    xp = xp_of(a)
    if a.ndim == 0:
        wrap_dim("sort", dim, 0)
        return ValuesIndices(a.copy(), xp.zeros((), dtype="int64"))
    d = wrap_dim("sort", dim, a.ndim)
    idx = _argsort(xp, a, d, descending).astype("int64", copy=False)
    return ValuesIndices(xp.take_along_axis(a, idx, axis=d), idx)


def _sort_like_backward(g, a, dim, descending, k=None):
    """Scatter ``g`` back to where the values came from. The indices are recomputed from the saved input
    (the stable sort is deterministic) because autograd saves a single output."""
    from ..factories import zeros
    from .index_gather import _scatter
    if a.ndim == 0:
        return g
    idx = argsort(a, dim, descending)
    if k is not None:
        idx = narrow_(idx, dim, k)
    return _scatter(zeros(a.shape, dtype=g.dtype, device=g.device), dim, idx, g)


def narrow_(t, dim, k):
    from ._util import V
    return V.narrow(t, dim, 0, k)


@sort.def_backward
def _(ctx, g, _gi):
    p = params(ctx, sort)
    return _sort_like_backward(g, p["a"], wrap_dim("sort", p["dim"], p["a"].ndim), p["descending"])


@defop_sig("argsort")
def argsort(a, dim=-1, descending=False, stable=False):
    xp = xp_of(a)
    if a.ndim == 0:
        wrap_dim("argsort", dim, 0)
        return xp.zeros((), dtype="int64")
    return _argsort(xp, a, wrap_dim("argsort", dim, a.ndim), descending).astype("int64", copy=False)


@defop_sig("topk", save=(0,))
def topk(a, k, dim=-1, largest=True, sorted=True):
    xp = xp_of(a)
    k = int(k)
    n = a.shape[wrap_dim("topk", dim, a.ndim)] if a.ndim else 1
    if not 0 <= k <= n:
        raise IndexError(f"topk: k ({k}) is out of range for dimension {dim} of size {n} (expected 0..{n})")
    if a.ndim == 0:
        return ValuesIndices(a.copy(), xp.zeros((), dtype="int64"))
    d = wrap_dim("topk", dim, a.ndim)
    # a full stable sort: the k results come out sorted, which sorted=False also allows
    idx = _argsort(xp, a, d, largest).astype("int64", copy=False)
    idx = idx[(slice(None),) * d + (slice(0, k),)]
    return ValuesIndices(xp.take_along_axis(a, idx, axis=d), idx)


@topk.def_backward
def _(ctx, g, _gi):
    p = params(ctx, topk)
    a = p["a"]
    return _sort_like_backward(g, a, wrap_dim("topk", p["dim"], a.ndim), p["largest"], int(p["k"]))


@defop_sig("unique")
def unique(a, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """Sorted unique values (always sorted, which sorted=False also allows). Not differentiable."""
    xp = xp_of(a)
    if dim is None:
        res = xp.unique(a.reshape(-1), return_inverse=return_inverse, return_counts=return_counts)
        if not (return_inverse or return_counts):
            return res
        res = list(res)
        if return_inverse:
            res[1] = res[1].reshape(a.shape).astype("int64", copy=False)
    else:
        d = wrap_dim("unique", dim, a.ndim)
        res = xp.unique(a, return_inverse=return_inverse, return_counts=return_counts, axis=d)
        if not (return_inverse or return_counts):
            return res
        res = list(res)
        if return_inverse:
            res[1] = res[1].reshape(-1).astype("int64", copy=False)
    if return_counts:
        res[-1] = res[-1].astype("int64", copy=False)
    return tuple(res)


@defop_sig("nonzero")
def nonzero(a, *, as_tuple=False):
    xp = xp_of(a)
    if a.ndim == 0:
        n = int(bool(a))
        if as_tuple:
            return (xp.zeros(n, dtype="int64"),)
        return xp.zeros((n, 0), dtype="int64")
    nz = tuple(x.astype("int64", copy=False) for x in xp.nonzero(a))
    if as_tuple:
        return nz
    return xp.stack(nz, axis=1) if nz else xp.zeros((0, 0), dtype="int64")


@defop("argwhere", composite=True)
def argwhere(a):
    return nonzero(a)


@defop_sig("one_hot")
def one_hot(a, num_classes=-1):
    xp = xp_of(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"one_hot: is only applicable to index tensors (int64), got dtype {a.dtype}")
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValueError(f"one_hot: class values must be non-negative, got {lo}")
    elif num_classes == -1:
        raise ValueError("one_hot: can not infer the number of classes from an empty tensor; pass num_classes")
    else:
        hi = -1
    if num_classes == -1:
        num_classes = hi + 1
    elif hi >= num_classes:
        raise ValueError(f"one_hot: class value {hi} is out of range for num_classes={num_classes}")
    if num_classes < 0:
        raise ShapeError(f"one_hot: num_classes must be -1 or non-negative, got {num_classes}")
    return (a[..., None] == xp.arange(num_classes)).astype("int64")
