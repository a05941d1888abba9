"""gather, scatter, scatter_add, index_select, index_add, index_fill, masked_fill, masked_select, take.

The public ops are thin composites over ``vt_impl::`` kernels so that tensors passed by keyword
(``x.gather(dim=1, index=i)``, ``scatter(..., src=s)``) still reach autograd and the device checks.
"""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, broadcast_shapes, sum_to, wrap_dim, xp_of
from .shape_util import add_at, checked_index
from ...errors import DTypeError, ShapeError


def _is_tensor(x):
    return hasattr(x, "_data") and hasattr(x, "grad_fn")


def _grid(xp, index, dim):
    """Full advanced index addressing ``index``'s positions, with ``index`` itself along ``dim``."""
    nd = index.ndim
    out = []
    for d in range(nd):
        if d == dim:
            out.append(index)
        else:
            shp = [1] * nd
            shp[d] = index.shape[d]
            out.append(xp.arange(index.shape[d]).reshape(shp))
    return tuple(out)


def _check_gs(opname, a, dim, index, src=None):
    """PyTorch's shape rules for gather/scatter; returns (dim, bounds-checked index)."""
    nd = max(a.ndim, 1)
    d = wrap_dim(opname, dim, a.ndim)
    if index.ndim != a.ndim and not (index.ndim <= 1 and a.ndim <= 1):
        raise ShapeError(f"{opname}: index must have the same number of dimensions as the input: index has "
                         f"shape {tuple(index.shape)}, input has shape {tuple(a.shape)}")
    ishape = tuple(index.shape) or (1,)
    ashape = tuple(a.shape) or (1,)
    for k in range(nd):
        if k != d and ishape[k] > ashape[k]:
            raise ShapeError(f"{opname}: index {tuple(index.shape)} is larger than input {tuple(a.shape)} in "
                             f"dimension {k} (only dimension {d} may differ)")
        if src is not None and hasattr(src, "shape") and ishape[k] > (tuple(src.shape) or (1,))[k]:
            raise ShapeError(f"{opname}: index {tuple(index.shape)} is larger than src {tuple(src.shape)} in "
                             f"dimension {k}")
    return d, checked_index(opname, xp_of(a), index, ashape[d], dim=d)


# -------------------------------------------------------------------------------- gather
@defop("gather", composite=True)
def gather(input, dim, index, *, sparse_grad=False):
    return _gather(input, dim, index)


@defop("gather", namespace="vt_impl", save=(2,))
def _gather(a, dim, index):
    xp = xp_of(a)
    d, idx = _check_gs("gather", a, dim, index)
    if a.ndim == 0:
        return a.reshape(1)[idx.reshape(1)].reshape(index.shape)
    return a[_grid(xp, idx, d)]


@_gather.def_backward
def _(ctx, g):
    a, dim, index = ctx.args
    from ..factories import zeros
    return _scatter_add(zeros(a.shape, dtype=g.dtype, device=g.device), dim, index, g), None


# -------------------------------------------------------------------------------- scatter / scatter_add
@defop("scatter", composite=True)
def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    if src is None and value is None:
        raise TypeError("scatter: pass src (a tensor) or value (a scalar)")
    s = src if src is not None else value
    if reduce is not None:
        if reduce == "add":
            if not _is_tensor(s):
                from ..factories import full
                s = full(tuple(index.shape), s, dtype=input.dtype, device=input.device)
            return _scatter_add(input, dim, index, s)
        raise NotImplementedError(f"scatter: reduce={reduce!r} is not supported (use scatter_add, or "
                                  f"reduce='add')")
    return _scatter(input, dim, index, s)


def _src_part(src, index):
    """The part of ``src`` that ``index`` addresses (index may be smaller than src in every dim)."""
    if not hasattr(src, "shape") or src.ndim == 0:
        return src
    if src.shape == index.shape:
        return src
    return src[tuple(slice(0, s) for s in index.shape)]


@defop("scatter", namespace="vt_impl", save=(2,))
def _scatter(a, dim, index, src):
    xp = xp_of(a)
    is_arr = hasattr(src, "shape") and getattr(src, "ndim", 0) > 0
    d, idx = _check_gs("scatter", a, dim, index, src if is_arr else None)
    out = a.copy()
    v = _src_part(src, index)
    if hasattr(v, "astype"):
        v = v.astype(a.dtype, copy=False)
    if a.ndim == 0:
        out.reshape(1)[idx.reshape(1)] = v if not hasattr(v, "reshape") else v.reshape(-1)[: idx.size]
        return out
    out[_grid(xp, idx, d)] = v
    return out


def _src_grad(g, dim, index, src_shape):
    part = _gather(g, dim, index)
    if tuple(part.shape) == tuple(src_shape):
        return part
    from .index import _index_grad
    return _index_grad(part, tuple(src_shape), tuple(slice(0, s) for s in index.shape), False)


@_scatter.def_backward
def _(ctx, g):
    a, dim, index, src = ctx.args
    ga = _scatter(g, dim, index, 0)
    if hasattr(src, "shape") and hasattr(src, "dtype"):
        gs = _src_grad(g, dim, index, src.shape)
        return ga, None, (gs if gs.dtype is src.dtype else gs.to(src.dtype))
    return ga, None


@defop("scatter_add", composite=True)
def scatter_add(input, dim, index, src):
    return _scatter_add(input, dim, index, src)


@defop("scatter_add", namespace="vt_impl", save=(2,))
def _scatter_add(a, dim, index, src):
    xp = xp_of(a)
    if not hasattr(src, "shape"):
        raise TypeError(f"scatter_add: src must be a tensor, got {type(src).__name__}")
    d, idx = _check_gs("scatter_add", a, dim, index, src)
    out = a.copy()
    v = _src_part(src, index)
    if a.ndim == 0:
        add_at(xp, out.reshape(1), idx.reshape(1), v.reshape(-1)[: idx.size])
        return out
    add_at(xp, out, _grid(xp, idx, d), v)
    return out


@_scatter_add.def_backward
def _(ctx, g):
    a, dim, index, src = ctx.args
    gs = _src_grad(g, dim, index, src.shape)
    return g, None, (gs if gs.dtype is src.dtype else gs.to(src.dtype))


# -------------------------------------------------------------------------------- index_select / index_add / index_fill
def _vec_index(opname, a, dim, index, negative=False):
    if index.ndim > 1:
        raise ShapeError(f"{opname}: index must be a vector (0-d or 1-d), got shape {tuple(index.shape)}")
    d = wrap_dim(opname, dim, a.ndim)
    n = a.shape[d] if a.ndim else 1
    return d, checked_index(opname, xp_of(a), index.reshape(-1), n, dim=d, negative=negative)


@defop("index_select", composite=True)
def index_select(input, dim, index):
    return _index_select(input, dim, index)


@defop("index_select", namespace="vt_impl", save=(2,))
def _index_select(a, dim, index):
    d, idx = _vec_index("index_select", a, dim, index)
    if a.ndim == 0:
        return a.reshape(1)[idx].reshape(index.shape)
    return xp_of(a).take(a, idx, axis=d)


@_index_select.def_backward
def _(ctx, g):
    a, dim, index = ctx.args
    from ..factories import zeros
    return _index_add(zeros(a.shape, dtype=g.dtype, device=g.device), dim, index, g, 1), None


@defop("index_add", composite=True)
def index_add(input, dim, index, source, *, alpha=1):
    return _index_add(input, dim, index, source, alpha)


@defop("index_add", namespace="vt_impl", save=(2,))
def _index_add(a, dim, index, source, alpha):
    xp = xp_of(a)
    d, idx = _vec_index("index_add", a, dim, index)
    want = tuple(a.shape[:d]) + (idx.size,) + tuple(a.shape[d + 1:]) if a.ndim else (idx.size,) * (index.ndim)
    if tuple(source.shape) != want and not (a.ndim == 0 and source.size == idx.size):
        raise ShapeError(f"index_add: source should have shape {want} (input {tuple(a.shape)} with dimension {d} "
                         f"of size len(index)={idx.size}), got {tuple(source.shape)}")
    out = a.copy()
    v = source if alpha == 1 else source * alpha
    if a.ndim == 0:
        add_at(xp, out.reshape(1), idx, v.reshape(-1))
    else:
        add_at(xp, out, (slice(None),) * d + (idx,), v)
    return out


@_index_add.def_backward
def _(ctx, g):
    a, dim, index, source, alpha = ctx.args
    gs = _index_select(g, dim, index)
    if a.ndim == 0:
        gs = V.reshape(gs, source.shape)
    if alpha != 1:
        gs = gs * alpha
    return g, None, (gs if gs.dtype is source.dtype else gs.to(source.dtype))


@defop("index_fill", composite=True)
def index_fill(input, dim, index, value):
    if _is_tensor(value) and value.ndim != 0:
        raise ShapeError(f"index_fill: only supports a 0-dimensional value tensor, got shape {tuple(value.shape)}")
    return _index_fill(input, dim, index, value)


@defop("index_fill", namespace="vt_impl", save=(2,))
def _index_fill(a, dim, index, value):
    d, idx = _vec_index("index_fill", a, dim, index, negative=True)
    out = a.copy()
    v = value.astype(a.dtype) if hasattr(value, "astype") else value
    if a.ndim == 0:
        if idx.size:
            out[...] = v
        return out
    out[(slice(None),) * d + (idx,)] = v
    return out


@_index_fill.def_backward
def _(ctx, g):
    a, dim, index, value = ctx.args
    ga = _index_fill(g, dim, index, 0)
    if hasattr(value, "shape"):
        gv = V.sum(g - ga)
        return ga, None, (gv if gv.dtype is value.dtype else gv.to(value.dtype))
    return ga, None


# -------------------------------------------------------------------------------- masked_fill / masked_select
def _check_mask(opname, mask):
    if mask.dtype != bool:
        raise DTypeError(f"{opname}: expected a bool mask, got dtype {mask.dtype}; convert it with mask.bool()")


@defop("masked_fill", composite=True)
def masked_fill(input, mask, value):
    if _is_tensor(value) and value.ndim != 0:
        raise ShapeError(f"masked_fill: only supports a 0-dimensional value tensor, got a tensor of shape "
                         f"{tuple(value.shape)}")
    return _masked_fill(input, mask, value)


@defop("masked_fill", namespace="vt_impl", save=(1,))
def _masked_fill(a, mask, value):
    xp = xp_of(a)
    _check_mask("masked_fill", mask)
    broadcast_shapes("masked_fill", a.shape, mask.shape)
    v = xp.asarray(value).astype(a.dtype)
    return xp.where(mask, v, a)


@_masked_fill.def_backward
def _(ctx, g):
    a, mask, value = ctx.args
    gm = _masked_fill(g, mask, 0)
    out = [sum_to(gm, a.shape), None]
    if hasattr(value, "shape"):
        gv = V.sum(g - gm)
        out.append(gv if gv.dtype is value.dtype else gv.to(value.dtype))
    return tuple(out)


@defop("masked_select", composite=True)
def masked_select(input, mask):
    return _masked_select(input, mask)


@defop("masked_select", namespace="vt_impl", save=(1,))
def _masked_select(a, mask):
    xp = xp_of(a)
    _check_mask("masked_select", mask)
    shape = broadcast_shapes("masked_select", a.shape, mask.shape)
    return xp.broadcast_to(a, shape)[xp.broadcast_to(mask, shape)]


@_masked_select.def_backward
def _(ctx, g):
    a, mask = ctx.args
    from .index import _index_grad
    shape = broadcast_shapes("masked_select", a.shape, mask.shape)
    full = _index_grad(g, shape, (V.expand(mask, shape),), False)
    return sum_to(full, a.shape), None


# -------------------------------------------------------------------------------- take
@defop("take", composite=True)
def take(input, index):
    return _take(input, index)


@defop("take", namespace="vt_impl", save=(1,))
def _take(a, index):
    idx = checked_index("take", xp_of(a), index, a.size, negative=True)
    return a.reshape(-1)[idx]


@_take.def_backward
def _(ctx, g):
    a, index = ctx.args
    from .index import _index_grad
    n = 1
    for s in a.shape:
        n *= s
    flat = _index_grad(g, (n,), (index,), True)
    return V.reshape(flat, a.shape), None
