"""Shape ops that copy: flip, roll, repeat, tile, tril, triu."""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, wrap_dim, xp_of
from .shape_util import defop_sig, params
from ...errors import ShapeError


def _dims_tuple(opname, dims, ndim):
    ds = (dims,) if isinstance(dims, int) else tuple(dims)
    out = tuple(wrap_dim(opname, int(d), ndim) for d in ds)
    if len(set(out)) != len(out):
        raise ValueError(f"{opname}: dim {ds} appears multiple times in the list of dims")
    return out


def _varargs(first, more):
    """``f(x, (0, 1))``, ``f(x, [0, 1])`` and ``x.f(0, 1)``."""
    if more:
        return (first,) + tuple(more)
    return first


@defop_sig("flip")
def flip(a, dims, *more):
    dims = _dims_tuple("flip", _varargs(dims, more), a.ndim)
    if a.ndim == 0:
        return a.copy()
    return xp_of(a).flip(a, dims).copy()  # a copy, as PyTorch's flip


@flip.def_backward
def _(ctx, g):
    p = params(ctx, flip)
    return V.flip(g, p["dims"], *p["more"])


@defop("fliplr", composite=True)
def fliplr(a):
    if a.ndim < 2:
        raise ShapeError(f"fliplr: input must be >= 2-d, got {a.ndim}-d")
    return V.flip(a, (1,))


@defop("flipud", composite=True)
def flipud(a):
    if a.ndim < 1:
        raise ShapeError("fliplr: input must be >= 1-d, got a 0-d tensor")
    return V.flip(a, (0,))


def _roll_args(a_ndim, shifts, dims):
    shifts = (int(shifts),) if isinstance(shifts, int) or not hasattr(shifts, "__len__") else tuple(map(int, shifts))
    if dims is None:
        if len(shifts) != 1:
            raise ValueError(f"roll: with dims=None, shifts must be a single integer, got {shifts}")
        return shifts, None
    dims = (int(dims),) if isinstance(dims, int) else tuple(map(int, dims))
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    return shifts, tuple(wrap_dim("roll", d, a_ndim) for d in dims)


@defop_sig("roll")
def roll(a, shifts, dims=None):
    xp = xp_of(a)
    shifts, dims = _roll_args(a.ndim, shifts, dims)
    if dims is None:
        return xp.roll(a.reshape(-1), shifts[0]).reshape(a.shape)
    return xp.roll(a, shifts, axis=dims)


@roll.def_backward
def _(ctx, g):
    p = params(ctx, roll)
    shifts, dims = _roll_args(p["a"].ndim, p["shifts"], p["dims"])
    return V.roll(g, tuple(-s for s in shifts), dims)


@defop_sig("repeat")
def repeat(a, sizes):
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < a.ndim:
        raise ShapeError(f"repeat: the number of repeat dims ({len(sizes)}) can not be smaller than the "
                         f"tensor's dims ({a.ndim}, shape {tuple(a.shape)})")
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: repeats must be non-negative, got {sizes}")
    a = a.reshape((1,) * (len(sizes) - a.ndim) + a.shape)
    return xp_of(a).tile(a, sizes)


@repeat.def_backward
def _(ctx, g):
    p = params(ctx, repeat)
    shape = p["a"].shape
    sizes = tuple(int(s) for s in p["sizes"])
    full = (1,) * (len(sizes) - len(shape)) + tuple(shape)
    # the output dim k holds sizes[k] copies of full[k]: split it and sum over the copies
    inter = []
    for r, s in zip(sizes, full):
        inter += [r, s]
    if 0 in inter:
        from ..factories import zeros
        return zeros(shape, dtype=g.dtype, device=g.device)
    gg = V.reshape(g, tuple(inter))
    gg = V.sum(gg, tuple(range(0, 2 * len(sizes), 2)))
    return V.reshape(gg, tuple(shape))


@defop("tile", composite=True)
def tile(a, dims):
    dims = tuple(int(d) for d in dims)
    if len(dims) < a.ndim:
        dims = (1,) * (a.ndim - len(dims)) + dims
    return V.repeat(a, dims)


def _tri_mask(xp, a, diagonal, upper):
    if a.ndim < 2:
        raise ShapeError(f"{'triu' if upper else 'tril'}: input tensor must have at least 2 dimensions, got "
                         f"shape {tuple(a.shape)}")
    n, m = a.shape[-2:]
    if upper:
        return ~xp.tri(n, m, k=int(diagonal) - 1, dtype=bool)
    return xp.tri(n, m, k=int(diagonal), dtype=bool)


@defop_sig("tril")
def tril(a, diagonal=0):
    xp = xp_of(a)
    return xp.where(_tri_mask(xp, a, diagonal, False), a, xp.zeros((), dtype=a.dtype))


@tril.def_backward
def _(ctx, g):
    return V.tril(g, params(ctx, tril)["diagonal"])


@defop_sig("triu")
def triu(a, diagonal=0):
    xp = xp_of(a)
    return xp.where(_tri_mask(xp, a, diagonal, True), a, xp.zeros((), dtype=a.dtype))


@triu.def_backward
def _(ctx, g):
    return V.triu(g, params(ctx, triu)["diagonal"])
