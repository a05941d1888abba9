"""softmax, log_softmax, layer_norm, rms_norm and their backward ops.

Statistics run in float32 at least (float16/bfloat16 inputs are upcast on every backend) and the
result is cast back to the input dtype. Softmax is max-subtracted. The norms' backward ops take the
input and recompute mean / rstd (one extra pass) rather than saving them, so each backward is a
single function of arrays a fused kernel can replace.
"""
from __future__ import annotations

import numpy as np

from .. import dtype as _dt
from .. import dispatcher as _disp
from ..dispatcher import defop
from ...errors import ShapeError
from ._util import V, xp_of
from .nn_common import dim_arg, needs, pack, positional, require_float, up


def _legacy_dim(ndim):
    # PyTorch's implicit softmax dim (F.softmax with dim=None)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax_prep(opname, input, dim, dtype):
    x = input
    if dtype is not None:
        x = x.astype(_dt.as_dtype(dtype).np)
    require_float(opname, x)
    d = dim_arg(opname, _legacy_dim(x.ndim) if dim is None else dim, x.ndim)
    return x, d


def _logsumexp_parts(xf, d):
    m = xf.max(axis=d, keepdims=True)
    xp = xp_of(xf)
    m = xp.where(xp.isfinite(m), m, 0)  # rows of -inf stay -inf (not nan from -inf - -inf)
    s = xf - m
    return s, xp.log(xp.exp(s).sum(axis=d, keepdims=True))


@positional
@defop("softmax", save_out=True)
def softmax(input, dim=None, dtype=None):
    x, d = _softmax_prep("softmax", input, dim, dtype)
    if x.ndim == 0:
        return xp_of(x).ones_like(x)
    if x.size == 0:
        return x.copy()
    xp = xp_of(x)
    xf = up(x)
    e = xp.exp(xf - xf.max(axis=d, keepdims=True))
    e /= e.sum(axis=d, keepdims=True)
    return e.astype(x.dtype, copy=False)


@softmax.def_backward
def _(ctx, g):
    dim = ctx.args[1]
    meta = ctx.args[0]
    d = _legacy_dim(meta.ndim) if dim is None else dim
    return V.softmax_backward(g, ctx.out, d, meta.dtype)


@defop("softmax_backward")
def softmax_backward(g, y, dim, input_dtype=None):
    """grad_input of softmax from the upstream grad and the softmax output: (g - sum(g*y)) * y."""
    if y.ndim == 0:
        out = g * 0
    else:
        d = dim % y.ndim
        gf, yf = up(g), up(y)
        out = (gf - (gf * yf).sum(axis=d, keepdims=True)) * yf
    dt = y.dtype if input_dtype is None else _dt.as_dtype(input_dtype).np
    return out.astype(dt, copy=False)


@positional
@defop("log_softmax", save_out=True)
def log_softmax(input, dim=None, dtype=None):
    x, d = _softmax_prep("log_softmax", input, dim, dtype)
    if x.ndim == 0:
        return xp_of(x).zeros_like(x)
    if x.size == 0:
        return x.copy()
    s, lse = _logsumexp_parts(up(x), d)
    return (s - lse).astype(x.dtype, copy=False)


@log_softmax.def_backward
def _(ctx, g):
    dim = ctx.args[1]
    meta = ctx.args[0]
    d = _legacy_dim(meta.ndim) if dim is None else dim
    return V.log_softmax_backward(g, ctx.out, d, meta.dtype)


@defop("log_softmax_backward")
def log_softmax_backward(g, y, dim, input_dtype=None):
    """grad_input of log_softmax from the upstream grad and its output: g - exp(y) * sum(g)."""
    xp = xp_of(y)
    if y.ndim == 0:
        out = g * 0
    else:
        d = dim % y.ndim
        gf, yf = up(g), up(y)
        out = gf - xp.exp(yf) * gf.sum(axis=d, keepdims=True)
    dt = y.dtype if input_dtype is None else _dt.as_dtype(input_dtype).np
    return out.astype(dt, copy=False)


# ---------------------------------------------------------------------------------------------- norms

def _norm_shape(opname, x, normalized_shape, weight, bias):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(int(s) for s in normalized_shape)
    k = len(ns)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != ns:
        raise ShapeError(f"{opname}: normalized_shape {ns} does not match the trailing dimensions of the input "
                         f"shape {tuple(x.shape)}; it must equal input.shape[-{max(k, 1)}:]")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != ns:
            raise ShapeError(f"{opname}: {name} has shape {tuple(p.shape)} but normalized_shape is {ns}")
    require_float(opname, x)
    return tuple(range(x.ndim - k, x.ndim))


def _mean_keep(x, axes):
    """``x.mean(axis=axes, keepdims=True)``. On numpy this is the sum divided by the count, which is what
    numpy's mean computes (bit-identical for float32/float64), without its Python-level wrapper: ~2 us
    less per call, and a norm's forward and backward make six."""
    if type(x) is np.ndarray:
        n = 1
        for a in axes:
            n *= x.shape[a]
        return np.add.reduce(x, axis=axes, keepdims=True) / n
    return x.mean(axis=axes, keepdims=True)


def _ln_stats(xf, axes, eps):
    xp = xp_of(xf)
    xc = xf - _mean_keep(xf, axes)
    return xc, 1.0 / xp.sqrt(_mean_keep(xc * xc, axes) + eps)


@positional
@defop("layer_norm", save=(0, 2, 3))
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = _norm_shape("layer_norm", input, normalized_shape, weight, bias)
    if input.size == 0:
        return input.copy()
    xc, rstd = _ln_stats(up(input), axes, eps)
    y = xc * rstd
    if weight is not None:
        y = y * up(weight)
    if bias is not None:
        y = y + up(bias)
    return y.astype(input.dtype, copy=False)


@layer_norm.def_backward
def _(ctx, g):
    x, w, b = ctx.args[0], ctx.args[2], ctx.args[3]
    nx, nw, nb = needs(ctx, 0, 2, 3)
    stats = None if ctx.kept is None else _disp._Tensor._make(ctx.kept, x._device)  # the fused forward's row stats
    gx, gw, gb = V.layer_norm_backward(g, x, ctx.args[1], w, b is not None, ctx.args[4], nx, nw, nb, stats)
    return pack(ctx, {0: gx, 2: gw, 3: gb})


@defop("layer_norm_backward")
def layer_norm_backward(g, x, normalized_shape, weight=None, has_bias=False, eps=1e-5, need_x=True,
                        need_w=True, need_b=True, stats=None):
    """(grad_input, grad_weight, grad_bias) of layer_norm; recomputes mean / rstd from ``x`` (``stats``, the
    fused CUDA forward's row means and rstds, serve its fused backward only)."""
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    gf = up(g)
    xc, rstd = _ln_stats(up(x), axes, eps)
    xhat = xc * rstd
    gx = gw = gb = None
    if need_w and weight is not None:
        gw = (gf * xhat).sum(axis=lead).astype(weight.dtype, copy=False)
    if need_b and has_bias:
        gb = gf.sum(axis=lead).astype(weight.dtype if weight is not None else x.dtype, copy=False)
    if need_x:
        gh = gf * up(weight) if weight is not None else gf
        gx = rstd * (gh - _mean_keep(gh, axes) - xhat * _mean_keep(gh * xhat, axes))
        gx = gx.astype(x.dtype, copy=False)
    return gx, gw, gb


def _rms_eps(x, eps):
    if eps is not None:
        return eps
    # PyTorch: epsilon of the op-math type (float32 for half types)
    return float(np.finfo(np.float64 if x.dtype == np.float64 else np.float32).eps)


@positional
@defop("rms_norm", save=(0, 2))
def rms_norm(input, normalized_shape, weight=None, eps=None):
    axes = _norm_shape("rms_norm", input, normalized_shape, weight, None)
    if input.size == 0:
        return input.copy()
    xp = xp_of(input)
    xf = up(input)
    rstd = 1.0 / xp.sqrt(_mean_keep(xf * xf, axes) + _rms_eps(input, eps))
    y = xf * rstd
    if weight is not None:
        y = y * up(weight)
    return y.astype(input.dtype, copy=False)


@rms_norm.def_backward
def _(ctx, g):
    x, w = ctx.args[0], ctx.args[2]
    nx, nw = needs(ctx, 0, 2)
    gx, gw = V.rms_norm_backward(g, x, ctx.args[1], w, ctx.args[3], nx, nw)
    return pack(ctx, {0: gx, 2: gw})


@defop("rms_norm_backward")
def rms_norm_backward(g, x, normalized_shape, weight=None, eps=None, need_x=True, need_w=True):
    """(grad_input, grad_weight) of rms_norm; recomputes rstd from ``x``."""
    xp = xp_of(x)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    xf, gf = up(x), up(g)
    rstd = 1.0 / xp.sqrt(_mean_keep(xf * xf, axes) + _rms_eps(x, eps))
    xhat = xf * rstd
    gx = gw = None
    if need_w and weight is not None:
        gw = (gf * xhat).sum(axis=tuple(range(x.ndim - k))).astype(weight.dtype, copy=False)
    if need_x:
        gh = gf * up(weight) if weight is not None else gf
        gx = (rstd * (gh - xhat * _mean_keep(gh * xhat, axes))).astype(x.dtype, copy=False)
    return gx, gw
