"""max, min, amax, amin, argmax, argmin (PyTorch semantics and gradients).

``max(x)`` -> 0-d value; ``max(x, dim, keepdim)`` -> (values, indices); ``max(x, other)`` ->
``maximum``. Gradients: amax/amin and the full max/min share evenly among ties; max/min with a dim
send the gradient to the returned index."""
from __future__ import annotations

import numpy as np

from ..dispatcher import defop
from ._util import V, ValuesIndices, xp_of
from .reduce_util import arg, axes, expand_back, nonempty, one_axis
from ...errors import DTypeError


def _is_tensor(x):
    from ..tensor import Tensor
    return isinstance(x, Tensor)


def _extreme(name, fn):
    def kernel(a, dim=(), keepdim=False):
        ax = axes(name, dim, a.ndim)
        nonempty(name, a, ax)
        with np.errstate(all="ignore"):
            return getattr(xp_of(a), fn)(a, axis=ax, keepdims=keepdim)
    kernel.__name__ = name
    op = defop(name, save=(0,), save_out=True)(kernel)

    @op.def_backward
    def _(ctx, g):
        a = ctx.args[0]
        ax = axes(name, arg(ctx, 1, "dim", ()), a.ndim)
        keepdim = arg(ctx, 2, "keepdim", False)
        o = expand_back(ctx.out, a.shape, ax, keepdim)
        mask = ((a == o) | (V.isnan(a) & V.isnan(o))).to(g.dtype)
        cnt = V.sum(mask, dim=ax, keepdim=True)
        return expand_back(g, a.shape, ax, keepdim) * mask / expand_back(cnt, a.shape, ax, True)
    return op


amax = _extreme("amax", "max")
amin = _extreme("amin", "min")


def _arg(name, fn):
    def kernel(a, dim=None, keepdim=False):
        xp = xp_of(a)
        if a.dtype.kind == "b":
            raise DTypeError(f"{name}: bool tensors are not supported (as PyTorch); convert with .int() first")
        if dim is None:
            nonempty(name, a, None)
            r = getattr(xp, fn)(a.reshape(-1)).astype(np.int64)
            return xp.asarray(r).reshape((1,) * a.ndim if keepdim else ())
        d = one_axis(name, dim, a.ndim)
        if a.ndim == 0:
            return xp.zeros((), dtype=np.int64)
        nonempty(name, a, (d,))
        return getattr(xp, fn)(a, axis=d, keepdims=keepdim).astype(np.int64, copy=False)
    kernel.__name__ = name
    return defop(name)(kernel)


argmax = _arg("argmax", "argmax")
argmin = _arg("argmin", "argmin")


def _minmax_dim(name, fn):  # registered as vt::_max_dim / vt::_min_dim; errors name max/min
    def kernel(a, dim, keepdim=False):
        xp = xp_of(a)
        d = one_axis(name, dim, a.ndim)
        if a.ndim == 0:
            return ValuesIndices(a.copy(), xp.zeros((), dtype=np.int64))
        nonempty(name, a, (d,))
        idx = getattr(xp, fn)(a, axis=d, keepdims=True)
        vals = xp.take_along_axis(a, idx, axis=d)
        if not keepdim:
            idx, vals = xp.squeeze(idx, d), xp.squeeze(vals, d)
        return ValuesIndices(vals, idx.astype(np.int64, copy=False))
    kernel.__name__ = name
    op = defop(f"_{name}_dim", save=(0,))(kernel)

    @op.def_backward
    def _(ctx, g, *_rest):
        a = ctx.args[0]
        return V._index_grad(a, g, fn, arg(ctx, 1, "dim"), arg(ctx, 2, "keepdim", False))
    return op


_max_dim = _minmax_dim("max", "argmax")
_min_dim = _minmax_dim("min", "argmin")


@defop("_index_grad")
def _index_grad(a, g, fn, dim, keepdim):
    """Zeros shaped like ``a`` with ``g`` at the arg-extreme index along ``dim`` (max/min backward)."""
    xp = xp_of(a)
    if a.ndim == 0:
        return g.astype(a.dtype).reshape(())
    d = one_axis("max", dim, a.ndim)
    idx = getattr(xp, fn)(a, axis=d, keepdims=True)
    if not keepdim:
        g = xp.expand_dims(g, d)
    pos = xp.arange(a.shape[d]).reshape((-1,) + (1,) * (a.ndim - d - 1))
    return xp.where(pos == idx, g, xp.zeros((), dtype=g.dtype))  # one-hot along d (no scatter needed)


def _dispatch(name, extreme, by_dim, pairwise):
    def fn(input, dim=None, keepdim=False, *, other=None):
        if other is not None or _is_tensor(dim):
            return pairwise(input, other if other is not None else dim)
        if dim is None:
            if keepdim:
                raise TypeError(f"{name}: keepdim=True needs a dim; use amax/amin(x, keepdim=True) for all dims")
            return extreme(input)
        return by_dim(input, dim, keepdim)
    fn.__name__ = name
    fn.__doc__ = (f"``{name}(x)`` -> 0-d tensor; ``{name}(x, dim, keepdim=False)`` -> (values, indices); "
                  f"``{name}(x, other)`` -> elementwise (as torch.{name}).")
    return defop(name, composite=True)(fn)


max_ = _dispatch("max", amax, _max_dim, lambda a, b: V.maximum(a, b))
min_ = _dispatch("min", amin, _min_dim, lambda a, b: V.minimum(a, b))
