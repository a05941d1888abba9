"""Elementwise ops with broadcasting and PyTorch type promotion."""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, broadcast_shapes, sum_to, xp_of


def _shape(x):
    return getattr(x, "shape", ())


def _bcast_check(name, a, b):
    sa, sb = _shape(a), _shape(b)
    if sa != sb and sa and sb:
        broadcast_shapes(name, sa, sb)


@defop("add", promote="default")
def add(a, b, *, alpha=1):
    _bcast_check("add", a, b)
    return a + b if alpha == 1 else a + alpha * b


@add.def_backward
def _(ctx, g):
    a, b = ctx.args
    alpha = ctx.kwargs.get("alpha", 1)
    ga = sum_to(g, a.shape) if hasattr(a, "shape") else None
    gb = None
    if hasattr(b, "shape"):
        gb = sum_to(g if alpha == 1 else g * alpha, b.shape)
    return tuple(x for x, t in ((ga, a), (gb, b)) if hasattr(t, "shape"))


@defop("sub", promote="default")
def sub(a, b, *, alpha=1):
    _bcast_check("sub", a, b)
    return a - b if alpha == 1 else a - alpha * b


@sub.def_backward
def _(ctx, g):
    a, b = ctx.args
    alpha = ctx.kwargs.get("alpha", 1)
    out = []
    if hasattr(a, "shape"):
        out.append(sum_to(g, a.shape))
    if hasattr(b, "shape"):
        out.append(sum_to(-g if alpha == 1 else g * (-alpha), b.shape))
    return tuple(out)


@defop("mul", promote="default", save=(0, 1))
def mul(a, b):
    _bcast_check("mul", a, b)
    return a * b


@mul.def_backward
def _(ctx, g):
    a, b = ctx.args
    out = []
    if hasattr(a, "shape"):
        out.append(sum_to(g * b, a.shape))
    if hasattr(b, "shape"):
        out.append(sum_to(g * a, b.shape))
    return tuple(out)


@defop("div", promote="float", save=(0, 1))
def div(a, b, *, rounding_mode=None):
    _bcast_check("div", a, b)
    if rounding_mode is None:
        return a / b
    xp = xp_of(a if hasattr(a, "shape") else b)
    if rounding_mode == "floor":
        return xp.floor_divide(a, b)
    if rounding_mode == "trunc":
        return xp.trunc(a / b).astype(xp.result_type(a, b))
    raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")


@div.def_backward
def _(ctx, g):
    a, b = ctx.args
    out = []
    if hasattr(a, "shape"):
        out.append(sum_to(g / b, a.shape))
    if hasattr(b, "shape"):
        out.append(sum_to(-g * a / (b * b), b.shape))
    return tuple(out)


@defop("neg")
def neg(a):
    return -a


@neg.def_backward
def _(ctx, g):
    return -g
