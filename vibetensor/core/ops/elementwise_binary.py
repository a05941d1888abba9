"""Binary and ternary elementwise math: pow, atan2, maximum/minimum, fmod/remainder, hypot,
logaddexp, lerp, addcmul, addcdiv. Any operand may be a Python scalar (PyTorch's promotion)."""
from __future__ import annotations

import math

from ..dispatcher import defop
from ._util import V, xp_of
from .elementwise_util import binary_grads, check_int_zero_div, no_bools, f32, int_kind
from ...errors import DTypeError


def _xp(*xs):
    for x in xs:
        if hasattr(x, "shape"):
            return xp_of(x)
    return xp_of(xs[0])


def _t(x):
    return hasattr(x, "shape")


# ------------------------------------------------------------------ pow
def _int_pow(xp, a, b):
    """Integer powers with negative integer exponents give 0 (|base| > 1), 1 or +-1 as in PyTorch."""
    if not _t(b):
        if b < 0:
            raise ValueError(f"pow: integers to negative integer powers are not allowed (exponent {b}); use a "
                             f"floating-point base, e.g. x.float() ** {b}")
        return a ** b
    neg = b < 0
    r = xp.power(a, xp.where(neg, 0, b).astype(b.dtype, copy=False))
    alt = xp.where(xp.asarray(a) == -1, xp.where(b % 2 == 0, 1, -1), xp.where(xp.asarray(a) == 1, 1, 0))
    return xp.where(neg, alt, r).astype(r.dtype, copy=False)


@defop("pow", promote="default", save=(0, 1), save_out=True)
@f32
def pow_(a, b):
    if _t(a) and _t(b):
        no_bools("pow", a, b)
    elif isinstance(b, bool) and _t(a) and a.dtype.kind == "b":
        return a | (not b)  # PyTorch: bool tensor ** bool scalar stays bool
    if int_kind(a) and int_kind(b):
        return _int_pow(_xp(a, b), a, b)
    return a ** b


@pow_.def_backward
def _(ctx, g):
    a, b = ctx.args
    o = ctx.out

    def ga():
        if not _t(b):
            return g * 0 if b == 0 else g * b * V.pow(a, b - 1)
        return V.where(b == 0, 0.0, g * b * V.pow(a, b - 1))

    def gb():
        if _t(a):  # d/db 0**b is 0 for b >= 0 (PyTorch); mask before the log so no inf * 0 happens
            m = (a == 0) & (b >= 0)
            return V.where(m, 0.0, g * o * V.log(V.where(m, 1.0, a)))
        if a == 0:
            return V.where(b >= 0, 0.0, g * o * -math.inf)
        return g * o * (math.log(a) if a > 0 else math.nan)
    return binary_grads(ctx, ga, gb)


# ------------------------------------------------------------------ atan2, hypot, logaddexp (float ops)
@defop("atan2", promote="float", save=(0, 1))
@f32
def atan2(a, b):
    return _xp(a, b).arctan2(a, b)


@atan2.def_backward
def _(ctx, g):
    a, b = ctx.args
    r = V.reciprocal(a * a + b * b)
    r = V.where(V.isinf(r), 0.0, r)  # at (0, 0) (or underflow) the gradient is 0, as PyTorch's atan2_backward
    return binary_grads(ctx, lambda: g * b * r, lambda: -g * a * r)


arctan2 = atan2


@defop("hypot", promote="float", save=(0, 1), save_out=True)
@f32
def hypot(a, b):
    return _xp(a, b).hypot(a, b)


@hypot.def_backward
def _(ctx, g):
    a, b = ctx.args
    o = ctx.out
    return binary_grads(ctx, lambda: g * a / o, lambda: g * b / o)


@defop("logaddexp", promote="float", save=(0, 1), save_out=True)
@f32
def logaddexp(a, b):
    return _xp(a, b).logaddexp(a, b)


@logaddexp.def_backward
def _(ctx, g):
    a, b = ctx.args
    o = ctx.out
    return binary_grads(ctx, lambda: g * V.exp(a - o), lambda: g * V.exp(b - o))


# ------------------------------------------------------------------ maximum / minimum
@defop("maximum", promote="default", save=(0, 1))
@f32(quiet=False)
def maximum(a, b):
    return _xp(a, b).maximum(a, b)


@defop("minimum", promote="default", save=(0, 1))
@f32(quiet=False)
def minimum(a, b):
    return _xp(a, b).minimum(a, b)


def _minmax_grads(ctx, g, is_max):
    # PyTorch: ties share the gradient equally; the losing side gets zero
    a, b = ctx.args
    half = V.where(a == b, g * 0.5, g)
    a_wins = (a > b) if is_max else (a < b)
    b_wins = (b > a) if is_max else (b < a)
    return binary_grads(ctx, lambda: V.where(b_wins, 0.0, half), lambda: V.where(a_wins, 0.0, half))


maximum.def_backward(lambda ctx, g: _minmax_grads(ctx, g, True))
minimum.def_backward(lambda ctx, g: _minmax_grads(ctx, g, False))


# ------------------------------------------------------------------ fmod / remainder
@defop("fmod", promote="default", save=(0, 1))
@f32
def fmod(a, b):
    no_bools("fmod", a, b)
    check_int_zero_div("fmod", a, b)
    return _xp(a, b).fmod(a, b)


@fmod.def_backward
def _(ctx, g):
    a, b = ctx.args
    return binary_grads(ctx, lambda: g, lambda: -g * V.trunc(a / b))


@defop("remainder", promote="default", save=(0, 1))
@f32
def remainder(a, b):
    no_bools("remainder", a, b)
    check_int_zero_div("remainder", a, b)
    return _xp(a, b).remainder(a, b)


@remainder.def_backward
def _(ctx, g):
    a, b = ctx.args
    return binary_grads(ctx, lambda: g, lambda: -g * V.floor(a / b))


# ------------------------------------------------------------------ lerp, addcmul, addcdiv
@defop("lerp", promote="float", save=(0, 1, 2))
@f32
def lerp(start, end, weight):
    xp = _xp(start, end, weight)
    d = end - start
    # PyTorch's two-sided formula: exact at weight 0 and 1
    if not _t(weight):
        out = start + weight * d if abs(weight) < 0.5 else end - d * (1 - weight)
    else:
        out = xp.where(xp.abs(weight) < 0.5, start + weight * d, end - d * (1 - weight))
    dt = start.dtype if _t(start) else end.dtype
    return out.astype(dt, copy=False)


@lerp.def_backward
def _(ctx, g):
    s, e, w = ctx.args
    return binary_grads(ctx, lambda: g * (1 - w), lambda: g * w, lambda: g * (e - s))


@defop("addcmul", promote="default", save=(1, 2))
@f32
def addcmul(a, t1, t2, *, value=1):
    return a + value * t1 * t2 if value != 1 else a + t1 * t2


@addcmul.def_backward
def _(ctx, g):
    _, t1, t2 = ctx.args
    v = ctx.kwargs.get("value", 1)
    return binary_grads(ctx, lambda: g, lambda: g * t2 * v, lambda: g * t1 * v)


@defop("addcdiv", promote="default", save=(1, 2))
@f32
def addcdiv(a, t1, t2, *, value=1):
    if int_kind(t1) and int_kind(t2):
        raise DTypeError("addcdiv: integer division with addcdiv is not supported (as in PyTorch); use "
                         "floating-point tensors, or (t1 / t2) for true division")
    return a + value * (t1 / t2)


@addcdiv.def_backward
def _(ctx, g):
    _, t1, t2 = ctx.args
    v = ctx.kwargs.get("value", 1)
    return binary_grads(ctx, lambda: g, lambda: g * v / t2, lambda: -g * v * t1 / (t2 * t2))
