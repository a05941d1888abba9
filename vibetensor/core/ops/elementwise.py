"""Elementwise arithmetic with broadcasting and PyTorch type promotion (the dispatcher's ``promote=``).

Kernels are small pure functions of arrays (numpy or CuPy through ``xp_of``) so a fused CUDA kernel
can be registered for any of them later. The rest of the elementwise set lives in
``elementwise_unary`` (math and activations), ``elementwise_binary`` (pow, atan2, maximum, ...) and
``elementwise_logic`` (comparisons, logical/bitwise, where, clamp, isclose ...).
"""
from __future__ import annotations

import numpy as np

from .. import dtype as _dt
from ..dispatcher import Key, defop
from ._util import V, xp_of
from .elementwise_util import bcast_error, binary_grads, check_int_zero_div, f32, int_kind, no_bools, zeros_for
from ...errors import DTypeError


def _is_bool_tensor(x):
    return getattr(x, "_dtype", None) is _dt.bool_


@defop("add", promote="default")
def add(a, b, *, alpha=1):
    try:
        return a + b if alpha == 1 else a + alpha * b
    except ValueError:
        bcast_error("add", a, b)
        raise


@add.def_backward
def _(ctx, g):
    alpha = ctx.kwargs.get("alpha", 1)
    return binary_grads(ctx, lambda: g, lambda: g if alpha == 1 else g * alpha)


@defop("sub", composite=True)
def sub(a, b, *, alpha=1):
    """``a - alpha * b``; bool tensors are refused (as PyTorch) before promotion hides them."""
    if _is_bool_tensor(a) or _is_bool_tensor(b) or isinstance(a, bool) or isinstance(b, bool):
        raise DTypeError("sub: subtraction (the `-` operator) with a bool is not supported; use "
                         "logical_xor() or `^` for two masks, or logical_not() / `~` to invert one")
    return V._sub(a, b, alpha=alpha)


@defop("_sub", promote="default")
def _sub(a, b, *, alpha=1):
    try:
        return a - b if alpha == 1 else a - alpha * b
    except ValueError:
        bcast_error("sub", a, b)
        raise


@_sub.def_backward
def _(ctx, g):
    alpha = ctx.kwargs.get("alpha", 1)
    return binary_grads(ctx, lambda: g, lambda: -g if alpha == 1 else g * (-alpha))


@defop("mul", promote="default", save=(0, 1), save_for={0: (1,), 1: (0,)})
def mul(a, b):
    try:
        return a * b  # (bool * bool is logical and, as PyTorch)
    except ValueError:
        bcast_error("mul", a, b)
        raise


@mul.def_backward
def _(ctx, g):
    a, b = ctx.args
    return binary_grads(ctx, lambda: g * b, lambda: g * a)


@defop("true_divide", promote="float", save=(0, 1), save_for={0: (1,), 1: (0, 1)})
@f32
def true_divide(a, b):
    return a / b


@true_divide.def_backward
def _(ctx, g):
    a, b = ctx.args
    return binary_grads(ctx, lambda: g / b, lambda: -g * a / (b * b))


@defop("div", composite=True)
def div(a, b, *, rounding_mode=None):
    """``torch.div``: true division, or ``rounding_mode='floor' | 'trunc'`` (integers stay integers)."""
    if rounding_mode is None:
        return V.true_divide(a, b)
    if rounding_mode == "floor":
        return V.floor_divide(a, b)
    if rounding_mode == "trunc":
        return V._div_trunc(a, b)
    raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got {rounding_mode!r}")


@defop("divide", composite=True)
def divide(a, b, *, rounding_mode=None):
    return div(a, b, rounding_mode=rounding_mode)


def _zero_grads(ctx, g):
    """Piecewise-constant ops (floor_divide, div with rounding): PyTorch returns zero gradients."""
    out = []
    for x, need in zip([x for x in ctx.args if hasattr(x, "shape")], ctx.needs_input_grad):
        out.append(zeros_for(x) if need else None)
    return tuple(out)


@defop("floor_divide", promote="default")
@f32
def floor_divide(a, b):
    no_bools("floor_divide", a, b)
    check_int_zero_div("floor_divide", a, b)
    return xp_of(a if hasattr(a, "shape") else b).floor_divide(a, b)


@defop("_div_trunc", promote="default")
@f32
def _div_trunc(a, b):
    no_bools("div", a, b)
    xp = xp_of(a if hasattr(a, "shape") else b)
    if not (int_kind(a) and int_kind(b)):
        return xp.trunc(a / b)
    check_int_zero_div("div(rounding_mode='trunc')", a, b)
    q = xp.floor_divide(a, b)
    r = a - q * b
    fix = (r != 0) & ((xp.asarray(a) < 0) != (xp.asarray(b) < 0))
    return xp.where(fix, q + 1, q).astype(q.dtype, copy=False)


floor_divide.def_backward(_zero_grads)
_div_trunc.def_backward(_zero_grads)


@defop("neg")
def neg(a):
    if a.dtype.kind == "b":
        raise DTypeError("neg: negation (the `-` operator) on a bool tensor is not supported; use logical_not() "
                         "or `~` to invert a mask")
    return -a


@neg.def_backward
def _(ctx, g):
    return -g


# In-place fast path (core/inplace.py): on numpy, ``t.add_(o)`` with o of t's float dtype (or a Python
# number) runs the ufunc straight into t's storage -- no result tensor, no copy back -- but only while
# every op in the chain still has the built-in CPU kernel named here (a library override turns it off).
DIRECT_INPLACE = {
    "add": (((add, add.kernels[Key.CPU]),), np.add),
    "sub": (((sub, sub.kernels[Key.CPU]), (_sub, _sub.kernels[Key.CPU])), np.subtract),
    "mul": (((mul, mul.kernels[Key.CPU]),), np.multiply),
    "div": (((div, div.kernels[Key.CPU]), (true_divide, true_divide.kernels[Key.CPU])), np.true_divide),
}


# the rest of the elementwise set registers on import
from . import elementwise_unary, elementwise_binary, elementwise_logic  # noqa: E402,F401
