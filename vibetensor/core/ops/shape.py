"""View and shape ops (views share storage and the version counter)."""
from __future__ import annotations

from ..dispatcher import defop
from ._util import V, wrap_dim, xp_of
from ...errors import ShapeError


def _infer_shape(opname, shape, numel):
    shape = list(shape)
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise ShapeError(f"{opname}: only one dimension can be -1, got shape {tuple(shape)}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if neg:
        if known == 0 or numel % known:
            raise ShapeError(f"{opname}: shape {tuple(shape)} is invalid for input of size {numel}")
        shape[neg[0]] = numel // known
    elif known != numel:
        raise ShapeError(f"{opname}: shape {tuple(shape)} is invalid for input of size {numel}")
    return tuple(shape)


@defop("view", view=True)
def view(a, shape):
    shape = _infer_shape("view", shape, a.size)
    out = a.view()
    try:
        out.shape = shape
    except AttributeError:
        raise ShapeError(f"view: cannot view a tensor of shape {a.shape} with strides "
                         f"{tuple(s // a.itemsize for s in a.strides)} as {shape} without copying; "
                         f"use .reshape(...) instead") from None
    return out


@view.def_backward
def _(ctx, g):
    return V.reshape(g, ctx.args[0].shape)


@defop("reshape", view=True)
def reshape(a, shape):
    return a.reshape(_infer_shape("reshape", shape, a.size))


@reshape.def_backward
def _(ctx, g):
    return V.reshape(g, ctx.args[0].shape)


@defop("expand", view=True)
def expand(a, shape):
    shape = tuple(shape)
    if len(shape) < a.ndim:
        raise ShapeError(f"expand: the number of sizes ({len(shape)}) must be at least the tensor's dims "
                         f"({a.ndim}) for shape {a.shape}")
    lead = len(shape) - a.ndim
    tgt = []
    for i, s in enumerate(shape):
        cur = a.shape[i - lead] if i >= lead else 1
        if s == -1:
            if i < lead:
                raise ShapeError(f"expand: -1 is not allowed in a new leading dimension ({shape})")
            s = cur
        if cur != 1 and cur != s:
            raise ShapeError(f"expand: the size {cur} at dimension {i - lead} of shape {a.shape} must match "
                             f"{s} in {shape} (only size-1 dims expand)")
        tgt.append(s)
    return xp_of(a).broadcast_to(a, tuple(tgt))


@expand.def_backward
def _(ctx, g):
    from ._util import sum_to
    return sum_to(g, ctx.args[0].shape)


@defop("permute", view=True)
def permute(a, dims):
    dims = tuple(wrap_dim("permute", d, a.ndim) for d in dims)
    if sorted(dims) != list(range(a.ndim)):
        raise ShapeError(f"permute: dims {dims} are not a permutation of 0..{a.ndim - 1}")
    return a.transpose(dims)


@permute.def_backward
def _(ctx, g):
    dims = [d % max(ctx.args[0].ndim, 1) for d in ctx.args[1]]
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    return V.permute(g, tuple(inv))


@defop("unsqueeze", view=True)
def unsqueeze(a, dim):
    d = wrap_dim("unsqueeze", dim, a.ndim + 1)
    return xp_of(a).expand_dims(a, d)


@unsqueeze.def_backward
def _(ctx, g):
    return V.reshape(g, ctx.args[0].shape)
