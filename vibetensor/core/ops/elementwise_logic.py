"""Comparisons, logical and bitwise ops, float classification, isclose/allclose/equal, where, clamp,
nan_to_num."""
from __future__ import annotations

import numpy as np

from .. import dtype as _dt
from ..dispatcher import defop
from ._util import V, xp_of
from .elementwise_util import bcast_error, binary_grads, f32, is_half
from ...errors import DTypeError


def _xp(*xs):
    for x in xs:
        if hasattr(x, "shape"):
            return xp_of(x)
    return np


def _tensor_cls():
    from ..tensor import Tensor
    return Tensor


# ------------------------------------------------------------------ comparisons (bool out, no gradient)
def _compare(name, ufunc):
    def kernel(a, b):
        return getattr(_xp(a, b), ufunc)(a, b)
    kernel.__name__ = name
    return defop(name, promote="default")(f32(kernel, quiet=False))


eq = _compare("eq", "equal")
ne = _compare("ne", "not_equal")
lt = _compare("lt", "less")
le = _compare("le", "less_equal")
gt = _compare("gt", "greater")
ge = _compare("ge", "greater_equal")
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


# ------------------------------------------------------------------ logical (any dtype, by truthiness)
def _truth(x):
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return x if x.dtype.kind == "b" else x != 0
    return bool(x)


def _logical(name, ufunc):
    def kernel(a, b):
        return getattr(_xp(a, b), ufunc)(_truth(a), _truth(b))
    kernel.__name__ = name
    return defop(name)(f32(kernel, quiet=False))


logical_and = _logical("logical_and", "logical_and")
logical_or = _logical("logical_or", "logical_or")
logical_xor = _logical("logical_xor", "logical_xor")


@defop("logical_not")
def logical_not(a):
    return ~_truth(a)


# ------------------------------------------------------------------ bitwise (integers and bool)
def _need_int(name, *xs):
    for x in xs:
        dt = getattr(x, "dtype", None)
        if (dt is not None and dt.kind not in "biu") or isinstance(x, float):
            raise DTypeError(f"{name}: only integer and bool tensors are supported, got "
                             f"{dt if dt is not None else type(x).__name__}; use logical_* ops for masks")


def _bitwise(name, ufunc):
    def kernel(a, b):
        _need_int(name, a, b)
        return getattr(_xp(a, b), ufunc)(a, b)
    kernel.__name__ = name
    return defop(name, promote="default")(f32(kernel, quiet=False))


bitwise_and = _bitwise("bitwise_and", "bitwise_and")
bitwise_or = _bitwise("bitwise_or", "bitwise_or")
bitwise_xor = _bitwise("bitwise_xor", "bitwise_xor")
bitwise_left_shift = _bitwise("bitwise_left_shift", "left_shift")
bitwise_right_shift = _bitwise("bitwise_right_shift", "right_shift")


@defop("bitwise_not")
def bitwise_not(a):
    _need_int("bitwise_not", a)
    return xp_of(a).invert(a)


# ------------------------------------------------------------------ classification
def _classify(name, ufunc, int_value):
    def kernel(a):
        xp = xp_of(a)
        if a.dtype.kind not in "fV":
            return xp.full(a.shape, int_value, dtype=bool)
        if is_half(a.dtype):
            a = a.astype(np.float32)
        return ufunc(xp, a)
    kernel.__name__ = name
    return defop(name)(kernel)


isnan = _classify("isnan", lambda xp, a: xp.isnan(a), False)
isinf = _classify("isinf", lambda xp, a: xp.isinf(a), False)
isfinite = _classify("isfinite", lambda xp, a: xp.isfinite(a), True)
isposinf = _classify("isposinf", lambda xp, a: a == np.inf, False)
isneginf = _classify("isneginf", lambda xp, a: a == -np.inf, False)


@defop("isclose", promote="default")
@f32
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a - b| <= atol + rtol * |b|, with equal infinities close and nan close to nan if equal_nan."""
    xp = _xp(a, b)
    if rtol < 0 or atol < 0:
        raise ValueError(f"isclose: rtol ({rtol}) and atol ({atol}) must be non-negative")
    dt = (a if hasattr(a, "dtype") else b).dtype
    if dt.kind == "b":
        return xp.equal(a, b)
    if dt.kind in "iu":  # differences of small integers would wrap around
        a = xp.asarray(a, dtype=np.float64)
        b = xp.asarray(b, dtype=np.float64)
    eq = xp.equal(a, b)
    d = xp.abs(a - b)
    close = eq | (xp.isfinite(d) & (d <= atol + rtol * xp.abs(b)))
    if equal_nan:
        close = close | (xp.isnan(a) & xp.isnan(b))
    return close


@defop("allclose", composite=True)
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """True when every element is close (Python bool, as torch.allclose)."""
    return bool(V.all(V.isclose(a, b, rtol, atol, equal_nan)).item())


@defop("equal", composite=True)
def equal(a, b):
    """True when both tensors have the same shape and elements (Python bool, as torch.equal)."""
    if tuple(a.shape) != tuple(b.shape):
        return False
    return bool(V.all(V.eq(a, b)).item())


# ------------------------------------------------------------------ where
def _cast_all(values, dt):
    T = _tensor_cls()
    return [v.to(dt) if isinstance(v, T) and v.dtype is not dt else v for v in values]


@defop("where", composite=True)
def where(condition, input=None, other=None):
    """``where(cond, x, y)``; ``x``/``y`` may be Python scalars (promoted as PyTorch does).
    ``where(cond)`` is ``nonzero(cond, as_tuple=True)``."""
    if input is None and other is None:
        return V.nonzero(condition, as_tuple=True)
    if input is None or other is None:
        raise TypeError("where: pass both input and other (where(cond, x, y)), or neither (where(cond))")
    if not isinstance(condition, _tensor_cls()):
        raise TypeError(f"where: condition must be a bool tensor, got {type(condition).__name__}")
    if condition.dtype not in (_dt.bool_, _dt.uint8):
        raise DTypeError(f"where: condition must be a bool tensor, got {condition.dtype.name}; compare it "
                         f"(e.g. cond != 0) to make a mask")
    dt = _dt.result_type(input, other)
    input, other = _cast_all((input, other), dt)
    return V._where(condition, input, other, dt)


@defop("_where", save=(0,))
def _where(cond, a, b, dtype):
    xp = _xp(cond, a, b)
    if cond.dtype.kind != "b":
        cond = cond != 0
    try:
        return xp.where(cond, a, b).astype(dtype.np, copy=False)
    except ValueError:
        bcast_error("where", cond, a, b)
        raise


@_where.def_backward
def _(ctx, g):
    c = ctx.args[0]
    return binary_grads(ctx, lambda: None, lambda: V._where(c, g, 0, g.dtype), lambda: V._where(c, 0, g, g.dtype))


# ------------------------------------------------------------------ clamp / clip
@defop("clamp", composite=True)
def clamp(input, min=None, max=None):
    """``clamp(x, min=None, max=None)``: scalars or tensors (broadcast); min > max gives max, as PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    dt = _dt.result_type(input, *[m for m in (min, max) if m is not None])
    input, min, max = _cast_all((input, min, max), dt)
    return V._clamp(input, min, max)


@defop("clip", composite=True)
def clip(input, min=None, max=None):
    return clamp(input, min, max)


@defop("_clamp", save=(0, 1, 2))
@f32(quiet=False)
def _clamp(a, lo, hi):
    xp = xp_of(a)
    out = a
    if lo is not None:
        out = xp.maximum(out, lo)
    if hi is not None:
        out = xp.minimum(out, hi)
    return out.astype(a.dtype, copy=False) if out.dtype != a.dtype else out


@_clamp.def_backward
def _(ctx, g):
    a, lo, hi = ctx.args[0], ctx.args[1], ctx.args[2]
    ok = None
    if lo is not None:
        ok = a >= lo
    if hi is not None:
        ok = (a <= hi) if ok is None else ok & (a <= hi)

    def g_lo():
        m = a < lo
        return V._where(m & (lo < hi) if hi is not None else m, g, 0, g.dtype)

    def g_hi():
        m = a > hi
        return V._where(m | (hi < lo) if lo is not None else m, g, 0, g.dtype)
    return binary_grads(ctx, lambda: V._where(ok, g, 0, g.dtype), g_lo, g_hi)


# ------------------------------------------------------------------ nan_to_num
def _finfo(dt):
    import ml_dtypes
    return ml_dtypes.finfo(dt) if dt.kind == "V" else np.finfo(dt)


@defop("nan_to_num", save=(0,))
def nan_to_num(a, nan=0.0, posinf=None, neginf=None):
    if a.dtype.kind not in "fV":
        return a.copy()
    xp = xp_of(a)
    fi = _finfo(a.dtype)
    posinf = float(fi.max) if posinf is None else posinf
    neginf = float(fi.min) if neginf is None else neginf
    x = a.astype(np.float32) if is_half(a.dtype) else a
    out = xp.where(xp.isnan(x), nan, xp.where(x == np.inf, posinf, xp.where(x == -np.inf, neginf, x)))
    return out.astype(a.dtype, copy=False)


@nan_to_num.def_backward
def _(ctx, g):
    return g * V.isfinite(ctx.args[0])

