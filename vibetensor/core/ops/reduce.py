"""Reductions over dims (with keepdim)."""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, wrap_dims, xp_of


@defop("sum")
def sum_(a, dim=None, keepdim=False, *, dtype=None):
    xp = xp_of(a)
    dims = wrap_dims("sum", dim, a.ndim) if dim is not None else None
    if dtype is not None:
        return xp.sum(a, axis=dims, keepdims=keepdim, dtype=dtype.np)
    kind = a.dtype.kind
    if kind in "biu":  # PyTorch sums bool/integers in int64
        return xp.sum(a, axis=dims, keepdims=keepdim, dtype="int64")
    return xp.sum(a, axis=dims, keepdims=keepdim)


@sum_.def_backward
def _(ctx, g):
    a = ctx.args[0]
    dim = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("dim")
    keepdim = ctx.args[2] if len(ctx.args) > 2 else ctx.kwargs.get("keepdim", False)
    if dim is not None and not keepdim:
        for d in wrap_dims("sum", dim, a.ndim):
            g = V.unsqueeze(g, d)
    elif dim is None and not keepdim:
        g = V.reshape(g, (1,) * a.ndim)
    return V.expand(g, a.shape).to(a.dtype)
