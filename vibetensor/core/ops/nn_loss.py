"""Losses: cross_entropy (class indices or class probabilities, weight, ignore_index, label_smoothing),
nll_loss, mse_loss, binary_cross_entropy(_with_logits), each with its own backward op.

Formulas follow PyTorch's (aten/src/ATen/native/LossNLL.cpp): with label smoothing,
``loss = (1-ls) * nll + ls/C * smooth`` where ``smooth = -sum_c w_c logp_c``; ``mean`` divides both
parts by the summed target weights of non-ignored entries. Everything is computed in float32 at
least and returned in the input dtype; log-softmax is max-subtracted.
"""
from __future__ import annotations

import numpy as np

from ..dispatcher import defop
from ...errors import DTypeError, ShapeError
from ._util import V, xp_of
from .nn_common import needs, pack, positional, require_float, sum_to_arr, up

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(opname, size_average, reduce, reduction):
    if size_average is not None or reduce is not None:  # PyTorch's legacy arguments
        sa = True if size_average is None else size_average
        rd = True if reduce is None else reduce
        reduction = "mean" if (sa and rd) else ("sum" if rd else "none")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{opname}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _log_softmax_2d(xl):
    xp = xp_of(xl)
    m = xl.max(axis=-1, keepdims=True) if xl.shape[-1] else xl[..., :1]
    m = xp.where(xp.isfinite(m), m, 0)
    s = xl - m
    return s - xp.log(xp.exp(s).sum(axis=-1, keepdims=True))


def _layout(opname, x, t, weight):
    """Class dim C, (M, C) view of ``x`` with classes last, and whether ``t`` holds probabilities."""
    if x.ndim == 0:
        raise ShapeError(f"{opname}: input must have at least 1 dimension (C,) or (N, C, ...), got a 0-d tensor")
    require_float(opname, x)
    cdim = 0 if x.ndim == 1 else 1
    C = x.shape[cdim]
    prob = t.dtype.kind in "fV"
    if prob:
        if tuple(t.shape) != tuple(x.shape):
            raise ShapeError(f"{opname}: class-probability targets must have the input's shape {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")
    else:
        if t.dtype.kind not in "iu":
            raise DTypeError(f"{opname}: class-index targets must be integers (int64), got {t.dtype}; "
                             f"convert them with .long()")
        want = tuple(x.shape[:cdim]) + tuple(x.shape[cdim + 1:])
        if tuple(t.shape) != want:
            raise ShapeError(f"{opname}: input shape {tuple(x.shape)} expects class-index targets of shape "
                             f"{want}, got {tuple(t.shape)}")
    if weight is not None and tuple(weight.shape) != (C,):
        raise ShapeError(f"{opname}: weight must have shape ({C},) (one entry per class), got {tuple(weight.shape)}")
    xl = x if x.ndim == 1 else xp_of(x).moveaxis(x, 1, -1)
    return cdim, C, xl.reshape(-1, C), prob


def _targets(opname, t, C, ignore_index):
    xp = xp_of(t)
    tf = t.reshape(-1).astype(np.int64, copy=False)
    valid = tf != ignore_index
    from .. import backend as _be
    _be.check_index_range(opname, xp.where(valid, tf, 0), 0, C, lambda v: (
        f"{opname}: target {v} is out of bounds for {C} classes (valid 0..{C - 1}, or "
        f"ignore_index={ignore_index})"))
    return tf, valid, xp.where(valid, tf, 0)


def _nll_parts(xl, tf, valid, ts, w, ls):
    """Per-row (weight of the target, nll, smoothing term) over (M, C) log-probabilities."""
    xp = xp_of(xl)
    picked = xp.take_along_axis(xl, ts[:, None], axis=1)[:, 0]
    wt = w[ts] * valid if w is not None else valid.astype(xl.dtype)
    nll = -wt * picked
    smooth = None
    if ls > 0:
        smooth = -((xl * w).sum(axis=-1) if w is not None else xl.sum(axis=-1)) * valid
    return wt, nll, smooth


def _no_grad_for(ctx, opname, positions):
    """Raise for gradients this op does not compute (class weights, pos_weight), as PyTorch does."""
    for p, name in positions.items():
        if needs(ctx, p)[0]:
            raise NotImplementedError(f"{opname}: the gradient with respect to {name} is not implemented; "
                                      f"pass {name}.detach()")


def _reduce_idx(wt, nll, smooth, ls, C, reduction, tshape):
    loss = nll if smooth is None else (1 - ls) * nll + (ls / C) * smooth
    if reduction == "none":
        return loss.reshape(tshape)
    if reduction == "sum":
        return loss.sum()
    with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as PyTorch
        return loss.sum() / wt.sum()


def _scale(g, reduction, M, denom, valid=None):
    """Upstream gradient per row of the (M, C) layout; 0 on ignored rows (``valid`` False)."""
    xp = xp_of(g)
    if reduction == "none":
        return g.reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):  # denom 0 (all ignored): the loss is NaN, ...
        s = g / denom if reduction == "mean" else g
    s = xp.broadcast_to(s, (M,))
    # ... but PyTorch skips ignored rows, so their gradient is 0, not 0 * inf
    return s if valid is None else xp.where(valid, s, 0)


def _unlayout(gl, shape):
    """(M, C) classes-last gradient back to the input's (N, C, ...) layout."""
    xp = xp_of(gl)
    shape = tuple(shape)
    if len(shape) == 1:
        return gl.reshape(shape)
    moved = (shape[0],) + shape[2:] + (shape[1],)
    return xp.moveaxis(gl.reshape(moved), -1, 1)


# ---------------------------------------------------------------------------------------------- cross entropy

@positional
@defop("cross_entropy", save=(0, 1, 2))
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    red = _reduction("cross_entropy", size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    cdim, C, xl, prob = _layout("cross_entropy", input, target, weight)
    logp = _log_softmax_2d(up(xl))
    w = up(weight)
    if prob:
        tt = up(target)
        tl = (tt if input.ndim == 1 else xp_of(tt).moveaxis(tt, 1, -1)).reshape(-1, C)
        if label_smoothing > 0:
            tl = tl * (1 - label_smoothing) + label_smoothing / C
        per = -((logp * tl * w) if w is not None else (logp * tl)).sum(axis=-1)
        if red == "none":
            out = per.reshape(tuple(input.shape[:cdim]) + tuple(input.shape[cdim + 1:]))
        elif red == "sum":
            out = per.sum()
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = per.sum() / (input.size // C) if input.size else per.sum() * np.nan
    else:
        tf, valid, ts = _targets("cross_entropy", target, C, ignore_index)
        wt, nll, smooth = _nll_parts(logp, tf, valid, ts, w, label_smoothing)
        out = _reduce_idx(wt, nll, smooth, label_smoothing, C, red, target.shape)
    return out.astype(input.dtype, copy=False)


@cross_entropy.def_backward
def _(ctx, g):
    a = ctx.args
    x, t, w = a[0], a[1], a[2]
    red = _reduction("cross_entropy", a[3], a[5], a[6])
    _no_grad_for(ctx, "cross_entropy", {2: "weight"})
    nx, nt = needs(ctx, 0, 1)
    # a fused CUDA forward keeps its row log-sum-exp and target count (ctx.kept): no second pass over x
    from ..tensor import Tensor
    stats = None if ctx.kept is None else Tensor._make(ctx.kept, x._device)
    gx, gt = V.cross_entropy_backward(g, x, t, w, a[4], red, a[7], nx, nt, stats)
    return pack(ctx, {0: gx, 1: gt})


@defop("cross_entropy_backward")
def cross_entropy_backward(g, x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                           need_input=True, need_target=False, stats=None):
    """(grad_input, grad_target) of cross_entropy; recomputes the log-softmax from ``x`` (``stats``, the
    fused CUDA forward's row log-sum-exp and count, serves the fused backward only)."""
    xp = xp_of(x)
    ls = label_smoothing
    cdim, C, xl, prob = _layout("cross_entropy", x, target, weight)
    logp = _log_softmax_2d(up(xl))
    p = xp.exp(logp)
    gf = up(g)
    w = up(weight)
    M = logp.shape[0]
    gx = gt = None
    if prob:
        tt = up(target)
        tl = (tt if x.ndim == 1 else xp.moveaxis(tt, 1, -1)).reshape(-1, C)
        s = _scale(gf, reduction, M, max(x.size // max(C, 1), 1))[:, None]
        if need_input:
            a = tl * (1 - ls) + ls / C if ls > 0 else tl
            if w is not None:
                a = a * w
            gx = _unlayout(s * (p * a.sum(axis=-1, keepdims=True) - a), x.shape).astype(x.dtype, copy=False)
        if need_target:
            d = -(1 - ls) * logp * s
            gt = _unlayout(d * w if w is not None else d, target.shape).astype(target.dtype, copy=False)
        return gx, gt
    tf, valid, ts = _targets("cross_entropy", target, C, ignore_index)
    wt = w[ts] * valid if w is not None else valid.astype(logp.dtype)
    s = _scale(gf, reduction, M, wt.sum(), valid)
    # d loss / d logp = -s * ((1-ls) * wt * onehot(t) + ls/C * w * valid)
    tot = (1 - ls) * wt + ((ls / C) * (w.sum() if w is not None else C)) * valid
    gl = p * (s * tot)[:, None]
    if ls > 0:
        gl -= (ls / C) * (s * valid)[:, None] * (w if w is not None else 1.0)
    rows = xp.arange(M)
    gl[rows, ts] -= (1 - ls) * wt * s
    return _unlayout(gl, x.shape).astype(x.dtype, copy=False), None


# ---------------------------------------------------------------------------------------------- nll

@positional
@defop("nll_loss", save=(1, 2))
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of class-index targets given log-probabilities ``input``."""
    red = _reduction("nll_loss", size_average, reduce, reduction)
    if target.dtype.kind in "fV":
        raise DTypeError("nll_loss: targets must be class indices (int64); for class probabilities use "
                         "cross_entropy")
    _, C, xl, _ = _layout("nll_loss", input, target, weight)
    tf, valid, ts = _targets("nll_loss", target, C, ignore_index)
    wt, nll, _ = _nll_parts(up(xl), tf, valid, ts, up(weight), 0.0)
    return _reduce_idx(wt, nll, None, 0.0, C, red, target.shape).astype(input.dtype, copy=False)


@nll_loss.def_backward
def _(ctx, g):
    a = ctx.args
    t, w = a[1], a[2]
    red = _reduction("nll_loss", a[3], a[5], a[6])
    _no_grad_for(ctx, "nll_loss", {2: "weight"})
    return pack(ctx, {0: V.nll_loss_backward(g, a[0].shape, a[0].dtype, t, w, a[4], red)})


@defop("nll_loss_backward")
def nll_loss_backward(g, input_shape, input_dtype, target, weight=None, ignore_index=-100, reduction="mean"):
    """grad_input of nll_loss: ``-w[t] * g`` at each target class (scaled for mean), zero elsewhere."""
    xp = xp_of(target)
    shape = tuple(input_shape)
    C = shape[0 if len(shape) == 1 else 1]
    tf, valid, ts = _targets("nll_loss", target, C, ignore_index)
    w = up(weight)
    gf = up(g)
    wt = w[ts] * valid if w is not None else valid.astype(gf.dtype)
    M = tf.shape[0]
    s = _scale(gf, reduction, M, wt.sum(), valid)
    gl = xp.zeros((M, C), dtype=gf.dtype)
    gl[xp.arange(M), ts] = -wt * s
    return _unlayout(gl, shape).astype(input_dtype.np, copy=False)


# ---------------------------------------------------------------------------------------------- mse / bce

def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _scale_like(g, reduction, n):
    return g / n if reduction == "mean" else g


@positional
@defop("mse_loss", save=(0, 1), promote="float")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    red = _reduction("mse_loss", size_average, reduce, reduction)
    if tuple(input.shape) != tuple(target.shape):  # (nn.functional warns about it)
        from ._util import broadcast_shapes
        broadcast_shapes("mse_loss", input.shape, target.shape)
    d = up(input) - up(target)
    return _reduce(d * d, red).astype(input.dtype, copy=False)


@mse_loss.def_backward
def _(ctx, g):
    x, t = ctx.saved
    a = ctx.args
    nx, nt = needs(ctx, 0, 1)
    gx, gt = V.mse_loss_backward(g, x, t, _reduction("mse_loss", a[2], a[3], a[4]), nx, nt)
    return pack(ctx, {0: gx, 1: gt})


@defop("mse_loss_backward")
def mse_loss_backward(g, x, t, reduction="mean", need_input=True, need_target=True):
    d = up(x) - up(t)
    gd = 2.0 * d * _scale_like(up(g), reduction, d.size)
    gx = sum_to_arr(gd, x.shape).astype(x.dtype, copy=False) if need_input else None
    gt = sum_to_arr(-gd, t.shape).astype(t.dtype, copy=False) if need_target else None
    return gx, gt


def _warn_broadcast(opname, x, t):
    """PyTorch computes a loss over differently shaped input and target by broadcasting, with a warning: an
    (N, 1) input against an (N,) target silently makes N x N terms."""
    if tuple(x.shape) != tuple(t.shape):
        from ._util import broadcast_shapes
        broadcast_shapes(opname, x.shape, t.shape)
        import warnings  # (stacklevel: the caller of nn.functional's loss)
        warnings.warn(f"{opname}: target size {tuple(t.shape)} differs from input size {tuple(x.shape)}; they "
                      f"broadcast, which is likely not intended (reshape one to the other's shape)",
                      UserWarning, stacklevel=3)


def _check_same_shape(opname, x, t):
    if tuple(x.shape) != tuple(t.shape):
        raise ShapeError(f"{opname}: target size {tuple(t.shape)} must be the same as input size {tuple(x.shape)}")


def _softplus_neg(xf):
    xp = xp_of(xf)
    return xp.log1p(xp.exp(-xp.abs(xf))) + xp.maximum(-xf, 0)  # log(1 + exp(-x)), stable


@positional
@defop("binary_cross_entropy_with_logits", save=(0, 1, 2, 6))
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    red = _reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    require_float("binary_cross_entropy_with_logits", input)
    xf, tf = up(input), up(target)
    sp = _softplus_neg(xf)
    if pos_weight is not None:
        loss = (1 - tf) * xf + (1 + (up(pos_weight) - 1) * tf) * sp
    else:
        loss = (1 - tf) * xf + sp
    if weight is not None:
        loss = loss * up(weight)
    return _reduce(loss, red).astype(input.dtype, copy=False)


@binary_cross_entropy_with_logits.def_backward
def _(ctx, g):
    a = ctx.args
    x, t = a[0], a[1]
    _no_grad_for(ctx, "binary_cross_entropy_with_logits", {2: "weight", 6: "pos_weight"})
    nx, nt = needs(ctx, 0, 1)
    red = _reduction("binary_cross_entropy_with_logits", a[3], a[4], a[5])
    gx, gt = V.binary_cross_entropy_with_logits_backward(g, x, t, a[2], a[6], red, nx, nt)
    return pack(ctx, {0: gx, 1: gt})


@defop("binary_cross_entropy_with_logits_backward")
def binary_cross_entropy_with_logits_backward(g, x, t, weight=None, pos_weight=None, reduction="mean",
                                              need_input=True, need_target=False):
    xp = xp_of(x)
    xf, tf = up(x), up(t)
    s = _scale_like(up(g), reduction, xf.size)
    if weight is not None:
        s = s * up(weight)
    sp = _softplus_neg(xf)
    gx = gt = None
    if pos_weight is not None:
        pw = up(pos_weight)
        if need_input:
            gx = ((1 - tf) - (1 + (pw - 1) * tf) * xp.exp(-xp.logaddexp(0, xf))) * s
        if need_target:
            gt = (-xf + (pw - 1) * sp) * s
    else:
        if need_input:
            gx = (1 / (1 + xp.exp(-xf)) - tf) * s
        if need_target:
            gt = -xf * s
    gx = None if gx is None else sum_to_arr(xp.broadcast_to(gx, x.shape), x.shape).astype(x.dtype, copy=False)
    gt = None if gt is None else sum_to_arr(xp.broadcast_to(gt, t.shape), t.shape).astype(t.dtype, copy=False)
    return gx, gt


@positional
@defop("binary_cross_entropy", save=(0, 1, 2))
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """BCE on probabilities; log terms clamped at -100 as PyTorch does."""
    red = _reduction("binary_cross_entropy", size_average, reduce, reduction)
    _check_same_shape("binary_cross_entropy", input, target)
    require_float("binary_cross_entropy", input)
    xp = xp_of(input)
    xf, tf = up(input), up(target)
    if xf.size and bool(((xf < 0) | (xf > 1)).any() | ((tf < 0) | (tf > 1)).any()):  # one host sync for both
        if bool(((xf < 0) | (xf > 1)).any()):
            raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1; "
                             "use binary_cross_entropy_with_logits for raw scores")
        raise ValueError("binary_cross_entropy: all elements of target should be between 0 and 1 (targets are "
                         "probabilities: 0/1 labels or soft labels)")
    with np.errstate(divide="ignore"):
        loss = -(tf * xp.maximum(xp.log(xf), -100) + (1 - tf) * xp.maximum(xp.log1p(-xf), -100))
    if weight is not None:
        loss = loss * up(weight)
    return _reduce(loss, red).astype(input.dtype, copy=False)


@binary_cross_entropy.def_backward
def _(ctx, g):
    a = ctx.args
    _no_grad_for(ctx, "binary_cross_entropy", {2: "weight"})
    nx, nt = needs(ctx, 0, 1)
    red = _reduction("binary_cross_entropy", a[3], a[4], a[5])
    gx, gt = V.binary_cross_entropy_backward(g, a[0], a[1], a[2], red, nx, nt)
    return pack(ctx, {0: gx, 1: gt})


@defop("binary_cross_entropy_backward")
def binary_cross_entropy_backward(g, x, t, weight=None, reduction="mean", need_input=True, need_target=False):
    xp = xp_of(x)
    xf, tf = up(x), up(t)
    s = _scale_like(up(g), reduction, xf.size)
    if weight is not None:
        s = s * up(weight)
    gx = gt = None
    if need_input:
        gx = xp.broadcast_to(s * (xf - tf) / xp.maximum((1 - xf) * xf, 1e-12), x.shape).astype(x.dtype)
    if need_target:
        with np.errstate(divide="ignore"):
            d = xp.maximum(xp.log1p(-xf), -100) - xp.maximum(xp.log(xf), -100)
        gt = xp.broadcast_to(s * d, t.shape).astype(t.dtype)
    return gx, gt
