"""Elementwise ops: clamp_min, clamp_max, xlogy, logit, erfinv, signbit (PyTorch semantics and gradients)."""
from __future__ import annotations

import math

import numpy as np

from ..dispatcher import defop
from ._util import V, xp_of
from .elementwise_util import binary_grads, f32

_SQRT_PI_2 = math.sqrt(math.pi) / 2


# ------------------------------------------------------------------ clamp_min / clamp_max
@defop("clamp_min", composite=True)
def clamp_min(input, min):
    """``clamp(x, min=min)`` (a scalar or a broadcasting tensor)."""
    return V.clamp(input, min, None)


@defop("clamp_max", composite=True)
def clamp_max(input, max):
    """``clamp(x, max=max)`` (a scalar or a broadcasting tensor)."""
    return V.clamp(input, None, max)


# ------------------------------------------------------------------ xlogy
def _xp(*xs):
    for x in xs:
        if hasattr(x, "shape"):
            return xp_of(x)
    return np


@defop("xlogy", promote="float", save=(0, 1))
@f32
def xlogy(input, other):
    """``x * log(y)``, 0 where x == 0 (unless y is NaN). Either operand may be a Python scalar."""
    xp = _xp(input, other)
    x, y = input, other
    ly, ynan = (xp.log(y), xp.isnan(y)) if hasattr(y, "shape") else (_log_scalar(y), math.isnan(y))
    return xp.where((x == 0) & ~ynan if hasattr(y, "shape") else (x == 0) & (not ynan), 0, x * ly)


def _log_scalar(y):
    y = float(y)
    return math.log(y) if y > 0 else (-math.inf if y == 0 else math.nan)


@xlogy.def_backward
def _(ctx, g):
    x, y = ctx.args

    def gx():  # x is a tensor here (binary_grads asks only tensors); PyTorch: 0 where x == 0 and y <= 0
        if hasattr(y, "shape"):
            return V.where((x == 0) & (y <= 0), 0.0, g * V.log(y))
        return V.where(x == 0, 0.0, g * _log_scalar(y)) if y <= 0 else g * _log_scalar(y)

    def gy():
        return g * x / y
    return binary_grads(ctx, gx, gy)


# ------------------------------------------------------------------ logit
@defop("logit", promote="float", save=(0,))
@f32
def logit(input, eps=None):
    """``log(z / (1 - z))`` with ``z = clamp(x, eps, 1 - eps)`` when eps is given (else z = x)."""
    xp = xp_of(input)
    z = input if eps is None else xp.clip(input, eps, 1 - eps)
    return xp.log(z / (1 - z)).astype(input.dtype, copy=False)


@logit.def_backward
def _(ctx, g):
    x = ctx.args[0]
    eps = ctx.args[1] if len(ctx.args) > 1 else ctx.kwargs.get("eps")
    d = g / (x * (1 - x))
    if eps is None:  # outside [0, 1] the derivative is NaN (PyTorch)
        return V.where((x < 0) | (x > 1), math.nan, d)
    return V.where((x < eps) | (x > 1 - eps), 0.0, d)


# ------------------------------------------------------------------ erfinv
def erfinv_array(x):
    """erfinv over an array: scipy's on numpy (scipy is a dependency), cupyx.scipy's on CuPy."""
    if xp_of(x) is not np:
        import cupyx.scipy.special as _sp  # optional GPU dependency, only reached with CuPy arrays
        return _sp.erfinv(x)
    from scipy.special import erfinv as _erfinv
    return _erfinv(x)


@defop("erfinv", promote="float", save_out=True)
@f32
def erfinv(input):
    """The inverse error function on (-1, 1) (+-inf at +-1, NaN outside)."""
    return erfinv_array(input).astype(input.dtype, copy=False)


@erfinv.def_backward
def _(ctx, g):
    o = ctx.out
    return g * V.exp(o * o) * _SQRT_PI_2


# ------------------------------------------------------------------ signbit
@defop("signbit")
def signbit(input):
    """True where the sign bit is set (negative numbers, -0.0, NaNs with the bit set)."""
    xp = xp_of(input)
    k = input.dtype.kind
    if k == "b" or k == "u":
        return xp.zeros(input.shape, dtype=bool)
    if k == "i":
        return input < 0
    if input.dtype.itemsize == 2:  # float16 / bfloat16: float32 keeps the sign of zeros and NaNs
        input = input.astype(np.float32)
    return xp.signbit(input)
