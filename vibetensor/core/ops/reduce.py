"""Reductions over dims (``dim=None | int | tuple``, ``keepdim``), PyTorch semantics: sum, mean, prod,
var, std, norm, logsumexp, all, any, count_nonzero. max/min/amax/amin/argmax/argmin live in
``reduce_minmax``, cumsum/cumprod in ``reduce_cum``.

float16/bfloat16 accumulate in float32 and return the input dtype; bool/int sums and products give
int64; mean/var/std/norm of integers raise and ask for a floating dtype (as PyTorch)."""
from __future__ import annotations

import math

import numpy as np

from ..dispatcher import defop
from ._util import V, cast_grad, xp_of
from .elementwise_util import is_half
from .reduce_util import F32, acc_dtype, arg, axes, count, expand_back, reduced_shape, require_float


def _grad_like(g, meta):
    return cast_grad(g, meta.dtype)


# ------------------------------------------------------------------ sum / mean / prod
@defop("sum")
def sum_(a, dim=None, keepdim=False, *, dtype=None):
    ax = axes("sum", dim, a.ndim)
    acc, out = acc_dtype(a, dtype)
    r = a.sum(axis=ax, keepdims=keepdim, dtype=acc)  # the method: numpy's np.sum wrapper costs ~1 us a call
    return r if r.dtype == out else r.astype(out)


@sum_.def_backward
def _(ctx, g):
    a = ctx.args[0]
    ax = axes("sum", arg(ctx, 1, "dim"), a.ndim)
    return _grad_like(expand_back(g, a.shape, ax, arg(ctx, 2, "keepdim", False)), a)


@defop("mean")
def mean(a, dim=None, keepdim=False, *, dtype=None):
    if dtype is None:
        require_float("mean", a, " or pass dtype=vt.float32")
    ax = axes("mean", dim, a.ndim)
    acc, out = acc_dtype(a, dtype)
    if a.size == 0:  # the mean of nothing is nan, silently (PyTorch)
        return xp_of(a).full(reduced_shape(a.shape, ax, keepdim), np.nan, dtype=out)
    r = xp_of(a).mean(a, axis=ax, keepdims=keepdim, dtype=acc)
    return r if r.dtype == out else r.astype(out)


@mean.def_backward
def _(ctx, g):
    a = ctx.args[0]
    ax = axes("mean", arg(ctx, 1, "dim"), a.ndim)
    n = count(a.shape, ax)
    return _grad_like(expand_back(g, a.shape, ax, arg(ctx, 2, "keepdim", False)) / max(n, 1), a)


@defop("prod", save=(0,))
def prod(a, dim=None, keepdim=False, *, dtype=None):
    ax = axes("prod", dim, a.ndim)
    acc, out = acc_dtype(a, dtype)
    r = xp_of(a).prod(a, axis=ax, keepdims=keepdim, dtype=acc)
    return r if r.dtype == out else r.astype(out)


@prod.def_backward
def _(ctx, g):
    a = ctx.args[0]
    ax = axes("prod", arg(ctx, 1, "dim"), a.ndim)
    others = V._prod_others(a, ax)  # product of every other element of the reduced group (zeros exact)
    return _grad_like(expand_back(g, a.shape, ax, arg(ctx, 2, "keepdim", False)) * others, a)


@defop("_prod_others")
def _prod_others(a, ax):
    """For each element, the product of the other elements of its reduction group (no division, so
    zeros are handled exactly): exclusive cumulative products from both ends."""
    xp = xp_of(a)
    dt = a.dtype
    x = a.astype(F32) if is_half(dt) else a
    nd = x.ndim
    red = tuple(range(nd)) if ax is None else ax
    keep = [i for i in range(nd) if i not in red]
    perm = keep + list(red)
    xt = xp.transpose(x, perm) if nd else x.reshape(1)
    lead = xt.shape[:len(keep)]
    flat = xt.reshape(lead + (-1,))
    ones = xp.ones(lead + (1,), dtype=flat.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1), -1), axis=-1), -1)
    res = (left * right).reshape(xt.shape)
    if nd == 0:
        return res.reshape(()).astype(dt)
    inv = [0] * nd
    for i, p in enumerate(perm):
        inv[p] = i
    return xp.transpose(res, inv).astype(dt, copy=False)


# ------------------------------------------------------------------ var / std
def _var_args(name, dim, unbiased, keepdim, correction):
    if isinstance(dim, bool):  # legacy var(x, unbiased)
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{name}: pass either unbiased= or correction=, not both")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, keepdim, correction


def _var_kernel(name, a, dim, unbiased, keepdim, correction, take_sqrt):
    require_float(name, a)
    dim, keepdim, c = _var_args(name, dim, unbiased, keepdim, correction)
    ax = axes(name, dim, a.ndim)
    xp = xp_of(a)
    x = a.astype(F32) if is_half(a.dtype) else a
    with np.errstate(all="ignore"):  # n - correction <= 0 gives inf/nan silently, as PyTorch
        m = xp.mean(x, axis=ax, keepdims=True)
        d = x - m
        r = xp.sum(d * d, axis=ax, keepdims=keepdim) / max(count(a.shape, ax) - c, 0)
        if take_sqrt:
            r = xp.sqrt(r)
    return xp.asarray(r).astype(a.dtype, copy=False)


@defop("var", save=(0,))
def var(a, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """``var(x, dim=None, *, correction=1, keepdim=False)``; ``unbiased=`` and ``var(x, unbiased)`` too."""
    return _var_kernel("var", a, dim, unbiased, keepdim, correction, False)


@defop("std", save=(0,), save_out=True)
def std(a, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """``std(x, dim=None, *, correction=1, keepdim=False)``; ``unbiased=`` and ``std(x, unbiased)`` too."""
    return _var_kernel("std", a, dim, unbiased, keepdim, correction, True)


def _var_grad(ctx, g, name):
    a = ctx.args[0]
    dim, keepdim, c = _var_args(name, arg(ctx, 1, "dim"), arg(ctx, 2, "unbiased"), arg(ctx, 3, "keepdim", False),
                                ctx.kwargs.get("correction"))
    ax = axes(name, dim, a.ndim)
    n = count(a.shape, ax)
    d = a - V.mean(a, dim=None if ax is None else ax, keepdim=True)
    ge = expand_back(g, a.shape, ax, keepdim)
    denom = max(n - c, 0)
    if name == "var":
        return ge * d * (2.0 / denom if denom else math.inf)
    s = expand_back(ctx.out, a.shape, ax, keepdim)
    r = ge * d / (s * denom if denom else s * 0)
    return V.where(s == 0, 0.0, r)


var.def_backward(lambda ctx, g: _var_grad(ctx, g, "var"))
std.def_backward(lambda ctx, g: _var_grad(ctx, g, "std"))


# ------------------------------------------------------------------ norm
def _norm_p(p):
    if p is None or p == "fro":
        return 2.0
    if p == "nuc":
        raise NotImplementedError("norm: p='nuc' (nuclear norm) needs an SVD, which vibetensor does not provide "
                                  "yet; use p='fro' or a vector p")
    if isinstance(p, str):
        raise ValueError(f"norm: p must be a number, 'fro' or 'nuc', got {p!r}")
    return float(p)


@defop("norm", save=(0,), save_out=True)
def norm(a, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector norm over ``dim`` (all dims by default): p = 2/'fro', inf, -inf, 0, or any p > 0."""
    if dtype is not None:
        a = a.astype(dtype.np)
    require_float("norm", a)
    p = _norm_p(p)
    ax = axes("norm", dim, a.ndim)
    xp = xp_of(a)
    x = a.astype(F32) if is_half(a.dtype) else a
    with np.errstate(all="ignore"):
        ab = xp.abs(x)
        if p == 2.0:
            r = xp.sqrt(xp.sum(x * x, axis=ax, keepdims=keepdim))
        elif p == 1.0:
            r = xp.sum(ab, axis=ax, keepdims=keepdim)
        elif p == 0.0:
            r = xp.sum(ab != 0, axis=ax, keepdims=keepdim).astype(x.dtype)
        elif math.isinf(p):
            from .reduce_util import nonempty
            nonempty("norm", a, ax)
            r = (xp.max if p > 0 else xp.min)(ab, axis=ax, keepdims=keepdim)
        else:
            r = xp.sum(ab ** p, axis=ax, keepdims=keepdim) ** (1.0 / p)
    return xp.asarray(r).astype(a.dtype, copy=False)


@norm.def_backward
def _(ctx, g):
    return _grad_like(_norm_grad(ctx, g), ctx.args[0])


def _norm_grad(ctx, g):
    a = ctx.args[0]
    p = _norm_p(arg(ctx, 1, "p", "fro"))
    ax = axes("norm", arg(ctx, 2, "dim"), a.ndim)
    keepdim = arg(ctx, 3, "keepdim", False)
    ge = expand_back(g, a.shape, ax, keepdim)
    o = expand_back(ctx.out, a.shape, ax, keepdim)
    if p == 0.0:
        return ge * 0
    if p == 1.0:
        return ge * V.sign(a)
    if math.isinf(p):  # like amax(|a|): shared evenly among the elements that attain it
        mask = (V.abs(a) == o).to(a.dtype)
        cnt = expand_back(V.sum(mask, dim=ax, keepdim=True), a.shape, ax, True)
        return ge * V.sign(a) * mask / cnt
    if p == 2.0:
        return V.where(o == 0, 0.0, ge * a / o)
    r = ge * a * V.pow(V.abs(a), p - 2) / V.pow(o, p - 1)
    return V.where((o == 0) | (a == 0), 0.0, r)


# ------------------------------------------------------------------ logsumexp
@defop("logsumexp", promote="float", save=(0,), save_out=True)
def logsumexp(a, dim=None, keepdim=False):
    ax = axes("logsumexp", dim, a.ndim)
    xp = xp_of(a)
    x = a.astype(F32) if is_half(a.dtype) else a
    if x.size == 0:
        return xp.full(reduced_shape(x.shape, ax, keepdim), -np.inf, dtype=a.dtype)
    with np.errstate(all="ignore"):
        m = xp.max(x, axis=ax, keepdims=True)
        m = xp.where(xp.isinf(m), 0, m)  # all -inf (or +inf) groups: no shift
        r = xp.log(xp.sum(xp.exp(x - m), axis=ax, keepdims=True)) + m
    if not keepdim:
        r = r.reshape(tuple(s for i, s in enumerate(r.shape) if not (ax is None or i in ax)))
    return r.astype(a.dtype, copy=False)


@logsumexp.def_backward
def _(ctx, g):
    a = ctx.args[0]
    ax = axes("logsumexp", arg(ctx, 1, "dim"), a.ndim)
    keepdim = arg(ctx, 2, "keepdim", False)
    return expand_back(g, a.shape, ax, keepdim) * V.exp(a - expand_back(ctx.out, a.shape, ax, keepdim))


# ------------------------------------------------------------------ all / any / count_nonzero
def _truth(a):
    return a if a.dtype.kind == "b" else a != 0


@defop("all")
def all_(a, dim=None, keepdim=False):
    r = xp_of(a).all(_truth(a), axis=axes("all", dim, a.ndim), keepdims=keepdim)
    return r.astype(np.uint8) if a.dtype == np.uint8 else r  # PyTorch keeps uint8 for uint8 input


@defop("any")
def any_(a, dim=None, keepdim=False):
    r = xp_of(a).any(_truth(a), axis=axes("any", dim, a.ndim), keepdims=keepdim)
    return r.astype(np.uint8) if a.dtype == np.uint8 else r


@defop("count_nonzero")
def count_nonzero(a, dim=None):
    return xp_of(a).sum(_truth(a), axis=axes("count_nonzero", dim, a.ndim), dtype=np.int64)


from . import reduce_minmax, reduce_cum  # noqa: E402,F401  (register the rest of the reductions)
