"""Cumulative reductions along one dim: cumsum, cumprod (bool/int -> int64 as PyTorch; float16 and
bfloat16 accumulate in float32)."""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, xp_of
from .elementwise_util import is_half
from .reduce_util import F32, acc_dtype, arg, one_axis


def _cum(name, fn):
    def kernel(a, dim, *, dtype=None):
        xp = xp_of(a)
        d = one_axis(name, dim, a.ndim)
        acc, out = acc_dtype(a, dtype)
        if a.ndim == 0:
            return a.astype(out)
        r = getattr(xp, fn)(a, axis=d, dtype=acc)
        return r if r.dtype == out else r.astype(out)
    kernel.__name__ = name
    return kernel


cumsum = defop("cumsum")(_cum("cumsum", "cumsum"))
cumprod = defop("cumprod", save=(0,), save_out=True)(_cum("cumprod", "cumprod"))


@cumsum.def_backward
def _(ctx, g):
    a = ctx.args[0]
    r = V._rev_cumsum(g, one_axis("cumsum", arg(ctx, 1, "dim"), a.ndim))
    return r if r.dtype is a.dtype else r.to(a.dtype)


@defop("_rev_cumsum")
def _rev_cumsum(g, d):
    """Sum from each position to the end along ``d`` (the adjoint of cumsum)."""
    xp = xp_of(g)
    if g.ndim == 0:
        return g.copy()
    x = g.astype(F32) if is_half(g.dtype) else g
    return xp.flip(xp.cumsum(xp.flip(x, d), axis=d), d).astype(g.dtype, copy=False)


@cumprod.def_backward
def _(ctx, g):
    a = ctx.args[0]
    return V._cumprod_grad(a, ctx.out, g, one_axis("cumprod", arg(ctx, 1, "dim"), a.ndim))


@defop("_cumprod_grad")
def _cumprod_grad(a, out, g, d):
    """d/da_i of sum_j g_j * cumprod(a)_j, exact with zeros: before the first zero of a slice it is
    revcumsum(g * out) / a; at the first zero, the same sum with that zero replaced by one; after it, 0."""
    xp = xp_of(a)
    if a.ndim == 0:
        return g.astype(a.dtype)
    dt = a.dtype
    if is_half(dt):
        a, out, g = a.astype(F32), out.astype(F32), g.astype(F32)
    g = g.astype(a.dtype, copy=False)
    x = xp.moveaxis(a, d, -1)
    o = xp.moveaxis(out, d, -1)
    gg = xp.moveaxis(g, d, -1)
    n = x.shape[-1]
    zero = x == 0
    has = xp.any(zero, axis=-1, keepdims=True)
    first = xp.argmax(zero, axis=-1, keepdims=True)
    pos = xp.arange(n).reshape((1,) * (x.ndim - 1) + (n,))

    def rcs(v):
        return xp.flip(xp.cumsum(xp.flip(v, -1), axis=-1), -1)
    base = rcs(gg * o) / xp.where(zero, 1, x)
    at_zero = pos == first
    y = xp.where(at_zero & has, 1, x)
    gz = xp.take_along_axis(rcs(gg * xp.cumprod(y, axis=-1)), first, axis=-1)
    res = xp.where(has & at_zero, gz, xp.where(has & (pos > first), 0, base))
    return xp.moveaxis(res, -1, d).astype(dt, copy=False)
