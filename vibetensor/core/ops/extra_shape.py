"""Shape ops: broadcast_to, meshgrid, repeat_interleave, take_along_dim, diff, hstack, vstack, numel, and
the index factories tril_indices / triu_indices (functions, not ops: they take no tensor)."""
from __future__ import annotations

import numpy as np

from .. import dtype as _dt
from ..dispatcher import defop
from ._util import V, wrap_dim, xp_of
from .shape_util import add_at
from ...errors import DTypeError, ShapeError


def _is_tensor(x):
    return hasattr(x, "_data") and hasattr(x, "grad_fn")


# ------------------------------------------------------------------ broadcast_to, meshgrid
@defop("broadcast_to", composite=True)
def broadcast_to(input, size):
    """``input`` viewed with shape ``size`` (as ``expand``; -1 keeps a dim)."""
    try:
        return V.expand(input, tuple(int(s) for s in size))
    except ShapeError as e:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {tuple(input.shape)} to {tuple(size)} "
                         f"({str(e).split(': ', 1)[-1]})") from None


@defop("meshgrid", composite=True)
def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 0-d/1-d tensors; ``indexing='ij'`` (matrix, the default) or ``'xy'`` (Cartesian:
    the first two output dims swapped). The outputs are expanded views, as PyTorch's."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    if not tensors:
        raise ValueError("meshgrid: expected at least one tensor")
    for i, t in enumerate(tensors):
        if not _is_tensor(t):
            raise TypeError(f"meshgrid: argument {i} is a {type(t).__name__}, not a tensor")
        if t.ndim > 1:
            raise ShapeError(f"meshgrid: expected 0-d or 1-d tensors, got shape {tuple(t.shape)} at position {i}")
    ts = list(tensors)
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    shape = tuple(t.numel() for t in ts)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[i] = shape[i]
        out.append(V.expand(V.reshape(t, tuple(view)), shape))
    if swap:
        out[0], out[1] = out[1], out[0]
    return tuple(out)


# ------------------------------------------------------------------ repeat_interleave
def _reps_list(repeats, n, dim):
    """Validated per-slice repeat counts (a Python list: the output size is needed on the host anyway)."""
    if repeats.dtype.kind not in "iu":
        raise DTypeError(f"repeat_interleave: repeats must be an integer tensor, got dtype {repeats.dtype}")
    if repeats.ndim > 1:
        raise ShapeError(f"repeat_interleave: repeats must be 0-d or 1-d, got shape {tuple(repeats.shape)}")
    reps = [int(r) for r in repeats.reshape(-1).tolist()]
    if len(reps) == 1:
        reps = reps * n
    if len(reps) != n:
        raise ShapeError(f"repeat_interleave: repeats has {len(reps)} entries but dim {dim} of the input has size "
                         f"{n}; pass one count per slice (or a single int)")
    if any(r < 0 for r in reps):
        raise ValueError(f"repeat_interleave: repeats must be non-negative, got {min(reps)}")
    return reps


@defop("repeat_interleave", composite=True)
def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """``repeat_interleave(x, repeats, dim=None)`` (int or tensor repeats; dim=None flattens first) and
    ``repeat_interleave(repeats)`` (``arange(n)`` repeated)."""
    if repeats is None:
        if not _is_tensor(input) or input.ndim > 1 or input.dtype.is_floating_point or input.dtype is _dt.bool_:
            raise TypeError("repeat_interleave(repeats): repeats must be a 0-d or 1-d integer tensor")
        from ..factories import arange
        repeats, input, dim = input, arange(input.numel(), device=input.device), 0
    if isinstance(repeats, bool) or not (isinstance(repeats, int) or _is_tensor(repeats)):
        raise TypeError(f"repeat_interleave: repeats must be an int or an integer tensor, got "
                        f"{type(repeats).__name__}")
    if isinstance(repeats, int) and repeats < 0:
        raise ValueError(f"repeat_interleave: repeats must be non-negative, got {repeats}")
    if dim is None or input.ndim == 0:
        if dim is not None:
            wrap_dim("repeat_interleave", dim, 0)
        input, dim = V.reshape(input, (-1,)), 0
    out = V._repeat_interleave(input, repeats, wrap_dim("repeat_interleave", dim, input.ndim))
    if output_size is not None and out.shape[dim] != int(output_size):
        raise ValueError(f"repeat_interleave: output_size={output_size} but the repeats give {out.shape[dim]}")
    return out


@defop("_repeat_interleave", save=(1,))
def _repeat_interleave(a, repeats, dim):
    xp = xp_of(a)
    if isinstance(repeats, int):
        return xp.repeat(a, repeats, axis=dim)
    reps = _reps_list(repeats, a.shape[dim], dim)
    idx = xp.asarray(np.repeat(np.arange(len(reps)), reps))
    return xp.take(a, idx, axis=dim)


@_repeat_interleave.def_backward
def _(ctx, g, *rest):
    a, repeats, dim = ctx.args
    return V._repeat_interleave_backward(g, repeats, dim, a.shape[dim]), None


@defop("_repeat_interleave_backward")
def _repeat_interleave_backward(g, repeats, dim, n):
    """Sum of each input slice's copies (the adjoint of repeat_interleave along ``dim``)."""
    xp = xp_of(g)
    if isinstance(repeats, int):
        shp = tuple(g.shape)
        return g.reshape(shp[:dim] + (n, repeats) + shp[dim + 1:]).sum(axis=dim + 1, dtype=g.dtype)
    reps = _reps_list(repeats, n, dim)
    idx = xp.asarray(np.repeat(np.arange(n), reps))
    out = xp.zeros(g.shape[:dim] + (n,) + g.shape[dim + 1:], dtype=g.dtype)
    add_at(xp, xp.moveaxis(out, dim, 0), idx, xp.moveaxis(g, dim, 0))
    return out


# ------------------------------------------------------------------ take_along_dim
@defop("take_along_dim", composite=True)
def take_along_dim(input, indices, dim=None):
    """``input`` gathered at ``indices`` along ``dim`` (the other dims broadcast); dim=None: of the flat input."""
    if not _is_tensor(indices) or indices.dtype.is_floating_point or indices.dtype is _dt.bool_:
        raise TypeError(f"take_along_dim: indices must be an integer (int64) tensor, got "
                        f"{getattr(indices, 'dtype', type(indices).__name__)}")
    if dim is None:
        return V.gather(V.reshape(input, (-1,)), 0, V.reshape(indices, (-1,)))
    if input.ndim != indices.ndim:
        raise ShapeError(f"take_along_dim: input and indices must have the same number of dims, got shapes "
                         f"{tuple(input.shape)} and {tuple(indices.shape)}")
    d = wrap_dim("take_along_dim", dim, input.ndim)
    si, sx = list(input.shape), list(indices.shape)
    for k in range(input.ndim):
        if k == d:
            continue
        if si[k] != sx[k] and 1 not in (si[k], sx[k]):
            raise ShapeError(f"take_along_dim: shapes {tuple(input.shape)} and {tuple(indices.shape)} do not "
                             f"broadcast in dimension {k} ({si[k]} vs {sx[k]}); only dim {d} may differ")
        si[k] = sx[k] = max(si[k], sx[k])
    if tuple(si) != tuple(input.shape):
        input = V.expand(input, tuple(si))
    if tuple(sx) != tuple(indices.shape):
        indices = V.expand(indices, tuple(sx))
    return V.gather(input, d, indices)


# ------------------------------------------------------------------ diff
@defop("diff", composite=True)
def diff(input, n=1, dim=-1, prepend=None, append=None):
    """n-th forward difference along ``dim`` (bool: logical xor), after concatenating prepend/append."""
    if input.ndim == 0:
        raise ShapeError("diff: expected a tensor with at least one dimension, got a 0-d tensor")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"diff: n must be a non-negative int, got {n!r}")
    d = wrap_dim("diff", dim, input.ndim)
    parts = []
    for name, x in (("prepend", prepend), (None, input), ("append", append)):
        if x is None:
            continue
        if not _is_tensor(x):
            raise TypeError(f"diff: {name} must be a tensor, got {type(x).__name__}")
        if x.ndim != input.ndim:
            raise ShapeError(f"diff: {name} must have the same number of dims as the input ({input.ndim}), got shape "
                             f"{tuple(x.shape)}")
        parts.append(x)
    x = V.cat(parts, d) if len(parts) > 1 else input
    for _ in range(n):
        L = x.shape[d]
        if L <= 1:
            return V.narrow(x, d, 0, 0)
        hi, lo = V.narrow(x, d, 1, L - 1), V.narrow(x, d, 0, L - 1)
        x = V.logical_xor(hi, lo) if x.dtype is _dt.bool_ else hi - lo
    return x


# ------------------------------------------------------------------ hstack, vstack
def _tensor_list(opname, tensors):
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{opname}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{opname}: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if not _is_tensor(t):
            raise TypeError(f"{opname}: element {i} is a {type(t).__name__}, not a tensor")
    return list(tensors)


@defop("hstack", composite=True)
def hstack(tensors):
    ts = [V.reshape(t, (1,)) if t.ndim == 0 else t for t in _tensor_list("hstack", tensors)]
    return V.cat(ts, 0 if all(t.ndim == 1 for t in ts) else 1)


@defop("vstack", composite=True)
def vstack(tensors):
    ts = [V.reshape(t, (1, -1)) if t.ndim < 2 else t for t in _tensor_list("vstack", tensors)]
    return V.cat(ts, 0)


# ------------------------------------------------------------------ numel
@defop("numel", composite=True)
def numel(input):
    """The number of elements (a Python int)."""
    if not _is_tensor(input):
        raise TypeError(f"numel: expected a tensor, got {type(input).__name__}")
    return input.numel()


# ------------------------------------------------------------------ tril_indices / triu_indices
def _tri_indices(name, row, col, offset, dtype, device, upper):
    for what, v in (("row", row), ("col", col), ("offset", offset)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: {what} must be an int, got {type(v).__name__}")
    if row < 0 or col < 0:
        raise ValueError(f"{name}: row and col must be non-negative, got row={row}, col={col}")
    dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    if dtype not in (_dt.int64, _dt.int32):
        raise DTypeError(f"{name}: dtype must be vt.int64 or vt.int32, got {dtype.name}")
    fn = np.triu_indices if upper else np.tril_indices
    r, c = fn(int(row), k=int(offset), m=int(col))
    from ..factories import tensor
    return tensor(np.stack([r, c]).astype(dtype.np).reshape(2, -1), dtype=dtype, device=device)


def tril_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (2, N) row/col indices of the lower triangle of a row x col matrix (row-major order)."""
    return _tri_indices("tril_indices", row, col, offset, dtype, device, False)


def triu_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (2, N) row/col indices of the upper triangle of a row x col matrix (row-major order)."""
    return _tri_indices("triu_indices", row, col, offset, dtype, device, True)
