"""Reductions and scans: cummax, cummin, logcumsumexp, var_mean, std_mean, aminmax, nansum, nanmean, median;
counting and lookup: bincount, searchsorted, isin.

Index-returning ops compute their indices in an integer kernel and take the values with ``gather``, so the
gradient reaches the chosen elements through gather's backward (PyTorch's rule for cummax/cummin and
median(dim)). Scans use numpy's ``ufunc.accumulate``; on other array modules (CuPy) a log-step scan of
plain ufuncs (``_scan``), which the tests also run on numpy.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .. import dtype as _dt
from ..dispatcher import defop
from ._util import V, ValuesIndices, xp_of
from .elementwise_util import is_half
from .reduce_util import F32, arg, nonempty, one_axis, require_float
from ...errors import DTypeError, ShapeError

MinMax = namedtuple("aminmax", ["min", "max"])


def _is_tensor(x):
    return hasattr(x, "_data") and hasattr(x, "grad_fn")


def _scan(xp, fn, x, axis, force_steps=False):
    """Inclusive scan of the associative binary ufunc ``fn`` (name) along ``axis``. numpy: its accumulate;
    otherwise (or ``force_steps``) Hillis-Steele: log2(n) passes of ``x[s:] = f(x[s:], x[:-s])``."""
    f = getattr(xp, fn)
    if xp is np and not force_steps:
        return f.accumulate(x, axis=axis)
    y = xp.moveaxis(x, axis, -1).copy()
    n, s = y.shape[-1], 1
    while s < n:
        y[..., s:] = f(y[..., s:], y[..., :-s])  # the right side is a new array: no aliasing
        s *= 2
    return xp.moveaxis(y, -1, axis)


# ------------------------------------------------------------------ cummax / cummin
def _cum_extreme_indices(name, fn, a, dim, force_steps=False):
    """Index of the running max/min along ``dim``: the latest position attaining it (ties and NaN as PyTorch:
    a NaN becomes the running value, and later NaNs take over its index)."""
    xp = xp_of(a)
    d = one_axis(name, dim, a.ndim)
    if a.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    x = a.astype(F32) if is_half(a.dtype) else a
    run = _scan(xp, fn, x, d, force_steps)
    hit = x == run
    if x.dtype.kind == "f":
        hit = hit | xp.isnan(x)
    n = x.shape[d]
    pos = xp.arange(n, dtype=np.int64).reshape((n,) + (1,) * (x.ndim - d - 1))
    return _scan(xp, "maximum", xp.where(hit, pos, 0), d, force_steps)


@defop("_cummax_indices")
def _cummax_indices(a, dim, force_steps=False):
    return _cum_extreme_indices("cummax", "maximum", a, dim, force_steps)


@defop("_cummin_indices")
def _cummin_indices(a, dim, force_steps=False):
    return _cum_extreme_indices("cummin", "minimum", a, dim, force_steps)


def _cum_extreme(name, idx_op):
    def fn(input, dim):
        idx = idx_op(input, dim)
        if input.ndim == 0:
            return ValuesIndices(V.clone(input), idx)
        return ValuesIndices(V.gather(input, dim, idx), idx)
    fn.__name__ = name
    fn.__doc__ = f"``{name}(x, dim)`` -> (values, indices): the running {name[3:]} along dim and where it was."
    return defop(name, composite=True)(fn)


cummax = _cum_extreme("cummax", _cummax_indices)
cummin = _cum_extreme("cummin", _cummin_indices)


# ------------------------------------------------------------------ logcumsumexp
@defop("logcumsumexp", save=(0,), save_out=True)
def logcumsumexp(a, dim, force_steps=False):
    """log(cumsum(exp(x))) along ``dim``, computed as a running logaddexp (no overflow or underflow)."""
    require_float("logcumsumexp", a)
    xp = xp_of(a)
    d = one_axis("logcumsumexp", dim, a.ndim)
    if a.ndim == 0:
        return a.copy()
    x = a.astype(F32) if is_half(a.dtype) else a
    with np.errstate(all="ignore"):
        r = _scan(xp, "logaddexp", x, d, force_steps)
    return r.astype(a.dtype, copy=False)


@logcumsumexp.def_backward
def _(ctx, g):
    a = ctx.args[0]
    return V._logcumsumexp_backward(a, ctx.out, g, one_axis("logcumsumexp", arg(ctx, 1, "dim"), a.ndim))


@defop("_logcumsumexp_backward")
def _logcumsumexp_backward(a, out, g, d):
    """grad_i = sum_{j >= i} g_j exp(x_i - out_j), as exp(x_i + revlogcumsumexp(log|g_j| - out_j)) split by the
    sign of g, so nothing overflows (TensorFlow's and PyTorch's formula)."""
    xp = xp_of(a)
    if a.ndim == 0:
        return g.astype(a.dtype)
    dt = a.dtype
    x, o, gg = (v.astype(F32) if is_half(v.dtype) else v for v in (a, out, g))
    with np.errstate(all="ignore"):
        def part(mask):
            lg = xp.where(mask, xp.log(xp.abs(gg)), -np.inf) - o
            r = xp.flip(_scan(xp, "logaddexp", xp.flip(lg, d), d), d)
            return xp.exp(r + x)
        res = part(gg > 0) - part(gg < 0)
    return res.astype(dt, copy=False)


# ------------------------------------------------------------------ var_mean / std_mean / aminmax
def _moments(name, fn, input, dim, unbiased, keepdim, correction):
    if isinstance(dim, bool):  # legacy var_mean(x, unbiased)
        dim, unbiased = None, dim
    v = fn(input, dim, unbiased, keepdim, correction=correction)
    m = V.mean(input, dim, keepdim)
    return v, m


@defop("var_mean", composite=True)
def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(var, mean) over ``dim`` (``correction=1`` by default), as ``torch.var_mean``."""
    return _moments("var_mean", V.var, input, dim, unbiased, keepdim, correction)


@defop("std_mean", composite=True)
def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """(std, mean) over ``dim`` (``correction=1`` by default), as ``torch.std_mean``."""
    return _moments("std_mean", V.std, input, dim, unbiased, keepdim, correction)


@defop("aminmax", composite=True)
def aminmax(input, *, dim=None, keepdim=False):
    """(min, max) over ``dim`` (all dims when None), as ``torch.aminmax``."""
    if input.dtype is _dt.bool_:
        raise DTypeError("aminmax: bool tensors are not supported; convert with .int() first")
    d = () if dim is None else one_axis("aminmax", dim, input.ndim)
    return MinMax(V.amin(input, d, keepdim), V.amax(input, d, keepdim))


# ------------------------------------------------------------------ nansum / nanmean
@defop("_nan_to_zero", save=(0,))
def _nan_to_zero(a):
    xp = xp_of(a)
    return xp.where(xp.isnan(a), xp.zeros((), dtype=a.dtype), a)


@_nan_to_zero.def_backward
def _(ctx, g):
    return V._nan_to_zero_backward(g, ctx.args[0])


@defop("_nan_to_zero_backward")
def _nan_to_zero_backward(g, a):
    """``g * ~isnan(a)``: a product, as PyTorch's nansum backward (an inf gradient gives NaN at NaNs)."""
    xp = xp_of(g)
    with np.errstate(all="ignore"):
        return (g * ~xp.isnan(a)).astype(g.dtype, copy=False)


@defop("nansum", composite=True)
def nansum(input, dim=None, keepdim=False, *, dtype=None):
    """sum treating NaN as zero (their gradient is zero)."""
    x = V._nan_to_zero(input) if input.dtype.is_floating_point else input
    return V.sum(x, dim, keepdim, dtype=dtype)


@defop("nanmean", composite=True)
def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    """mean over the non-NaN elements (NaN where there are none)."""
    if dtype is None and not input.dtype.is_floating_point:
        raise DTypeError(f"nanmean: expected a floating-point tensor, got {input.dtype.name}; convert with .float() "
                         f"or pass dtype=vt.float32")
    if dtype is not None:
        input = input.to(dtype)
    s = V.sum(V._nan_to_zero(input), dim, keepdim)
    return s / V.sum(V.logical_not(V.isnan(input)), dim, keepdim).to(s.dtype)


# ------------------------------------------------------------------ median
def _nan_first_index(xp, x, d):
    return xp.argmax(xp.isnan(x), axis=d, keepdims=True)


@defop("_median_dim_indices")
def _median_dim_indices(a, dim, keepdim=False):
    """Index along ``dim`` of the lower median (sorted position (n-1)//2); a slice with NaN gives its first NaN."""
    from .index_sort import _argsort
    xp = xp_of(a)
    d = one_axis("median", dim, a.ndim)
    if a.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    nonempty("median", a, (d,))
    if a.dtype.kind == "b":
        raise DTypeError("median: bool tensors are not supported; convert with .int() first")
    x = a.astype(F32) if is_half(a.dtype) else a
    order = _argsort(xp, x, d, False)
    k = (x.shape[d] - 1) // 2
    idx = xp.take(order, xp.asarray([k]), axis=d)
    if x.dtype.kind == "f":
        has = xp.any(xp.isnan(x), axis=d, keepdims=True)
        idx = xp.where(has, _nan_first_index(xp, x, d), idx)
    idx = idx.astype(np.int64, copy=False)
    return idx if keepdim else xp.squeeze(idx, d)


@defop("_median_all", save=(0,), save_out=True)
def _median_all(a):
    """The lower median of all elements (NaN if any)."""
    from .index_sort import _argsort
    xp = xp_of(a)
    if a.size == 0:
        raise IndexError(f"median: cannot take the median of an empty tensor (shape {tuple(a.shape)})")
    if a.dtype.kind == "b":
        raise DTypeError("median: bool tensors are not supported; convert with .int() first")
    flat = a.reshape(-1)
    x = flat.astype(F32) if is_half(a.dtype) else flat
    if x.dtype.kind == "f" and bool(xp.isnan(x).any()):
        return xp.asarray(np.nan, dtype=a.dtype).reshape(())
    order = _argsort(xp, x, 0, False)
    return flat[order[(x.size - 1) // 2]].reshape(())


@_median_all.def_backward
def _(ctx, g):  # shared evenly among the elements equal to the median (PyTorch's evenly_distribute_backward)
    a, o = ctx.args[0], ctx.out
    mask = ((a == o) | (V.isnan(a) & V.isnan(o))).to(g.dtype)
    return g * mask / V.sum(mask)


@defop("median", composite=True)
def median(input, dim=None, keepdim=False):
    """``median(x)`` -> the lower median (0-d); ``median(x, dim, keepdim=False)`` -> (values, indices)."""
    if dim is None:
        if keepdim:
            raise TypeError("median: keepdim=True needs a dim")
        return V._median_all(input)
    idx = V._median_dim_indices(input, dim, True)
    if input.ndim == 0:
        return ValuesIndices(V.clone(input), V.reshape(idx, ()))
    vals = V.gather(input, dim, idx)
    if not keepdim:
        vals, idx = V.squeeze(vals, dim), V.squeeze(idx, dim)
    return ValuesIndices(vals, idx)


# ------------------------------------------------------------------ bincount
@defop("bincount", composite=True)
def bincount(input, weights=None, minlength=0):
    """Counts of each value of a 1-d non-negative integer tensor (sums of ``weights`` when given)."""
    if weights is None:
        return V._bincount(input, minlength)
    return V._bincount_weighted(input, weights, minlength)


def _check_bins(a, minlength):
    if a.dtype.kind not in "iu":
        raise DTypeError(f"bincount: input must be an integer tensor, got {a.dtype}")
    if a.ndim != 1:
        raise ShapeError(f"bincount: input must be 1-d, got shape {tuple(a.shape)}")
    if isinstance(minlength, bool) or int(minlength) < 0:
        raise ValueError(f"bincount: minlength must be a non-negative int, got {minlength!r}")
    if a.size and int(a.min()) < 0:
        raise ValueError(f"bincount: input must be non-negative, got {int(a.min())}")


@defop("_bincount")
def _bincount(a, minlength=0):
    _check_bins(a, minlength)
    return xp_of(a).bincount(a, minlength=int(minlength)).astype(np.int64, copy=False)


@defop("_bincount_weighted", save=(0,))
def _bincount_weighted(a, w, minlength=0):
    _check_bins(a, minlength)
    if w.shape != a.shape:
        raise ShapeError(f"bincount: weights must have the input's shape {tuple(a.shape)}, got {tuple(w.shape)}")
    xp = xp_of(a)
    out = w.dtype if w.dtype.kind in "fV" else np.dtype(np.float64)  # integer weights count in float64
    r = xp.bincount(a, weights=w.astype(np.float64), minlength=int(minlength))
    return r.astype(out)


@_bincount_weighted.def_backward
def _(ctx, g):
    a, w = ctx.args[0], ctx.args[1]
    gw = V.take(g, a)
    return None, gw if gw.dtype is w.dtype else gw.to(w.dtype)


# ------------------------------------------------------------------ searchsorted / isin
@defop("searchsorted", composite=True)
def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None):
    """Insertion points of ``input`` in the innermost dim of ``sorted_sequence`` (left: first position where
    it fits; right=True or side='right': after equal values)."""
    if side is not None:
        if side not in ("left", "right"):
            raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
        if right and side == "left":
            raise ValueError("searchsorted: side='left' contradicts right=True; pass one of them")
        right = side == "right"
    scalar = not _is_tensor(input)
    if scalar:
        from ..factories import tensor
        input = tensor(input, device=sorted_sequence.device)
    r = V._searchsorted(sorted_sequence, input, bool(right), sorter)
    return r.to(_dt.int32) if out_int32 else r


@defop("_searchsorted")
def _searchsorted(seq, v, right, sorter=None):
    xp = xp_of(seq)
    if seq.ndim == 0:
        raise ShapeError("searchsorted: sorted_sequence must have at least one dimension, got a 0-d tensor")
    if sorter is not None:
        if sorter.shape != seq.shape or sorter.dtype.kind not in "iu":
            raise ShapeError(f"searchsorted: sorter must be an integer tensor of sorted_sequence's shape "
                             f"{tuple(seq.shape)}, got {tuple(sorter.shape)} ({sorter.dtype})")
        seq = xp.take_along_axis(seq, sorter.astype(np.int64), axis=-1)
    side = "right" if right else "left"
    if seq.ndim == 1:
        return xp.asarray(xp.searchsorted(seq, v, side=side)).astype(np.int64, copy=False)
    if v.ndim != seq.ndim or v.shape[:-1] != seq.shape[:-1]:
        raise ShapeError(f"searchsorted: for an N-d sorted_sequence (shape {tuple(seq.shape)}) the values must have "
                         f"the same leading dims, got shape {tuple(v.shape)}")
    s, w = seq[..., None, :], v[..., :, None]
    hit = (s <= w) if right else (s < w)
    return xp.sum(hit, axis=-1, dtype=np.int64)


@defop("isin", composite=True)
def isin(elements, test_elements, *, assume_unique=False, invert=False):
    """Whether each element of ``elements`` is among ``test_elements`` (either may be a scalar)."""
    from ..factories import tensor
    if not _is_tensor(elements) and not _is_tensor(test_elements):
        raise TypeError("isin: at least one of elements and test_elements must be a tensor")
    if not _is_tensor(elements):
        elements = tensor(elements, device=test_elements.device)
    if not _is_tensor(test_elements):
        test_elements = tensor(test_elements, device=elements.device)
    return V._isin(elements, test_elements, bool(invert))


@defop("_isin")
def _isin(a, t, invert):
    xp = xp_of(a)
    if is_half(a.dtype) or is_half(t.dtype):
        a, t = a.astype(F32), t.astype(F32)
    r = xp.isin(a, t.reshape(-1), invert=invert)
    return xp.asarray(r).reshape(a.shape)

