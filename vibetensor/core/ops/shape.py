"""View and shape ops (views share storage and the version counter)."""
from __future__ import annotations

import numpy as np

from ..dispatcher import AUTOGRAD_KEY, CPU_KEY, CUDA_KEY, Key, call_view, defop
from ..size_args import _shape_arg
from ..tensor import Tensor
from ._util import V, wrap_dim, wrap_dims, xp_of
from .shape_util import defop_sig, params
from ...errors import ShapeError


def _infer_shape(opname, shape, numel):
    known, neg = 1, None
    for i, s in enumerate(shape):
        if s >= 0:
            known *= s
        elif s == -1 and neg is None:
            neg = i
        elif s == -1:
            raise ShapeError(f"{opname}: only one dimension can be -1, got shape {tuple(shape)}")
        else:
            raise ShapeError(f"{opname}: invalid shape {tuple(shape)}: sizes must be non-negative (or -1 to "
                             f"infer one)")
    if neg is None:
        if known != numel:
            raise ShapeError(f"{opname}: shape {tuple(shape)} is invalid for input of size {numel}")
        return tuple(shape)
    if known == 0 or numel % known:
        raise ShapeError(f"{opname}: shape {tuple(shape)} is invalid for input of size {numel}")
    shape = list(shape)
    shape[neg] = numel // known
    return tuple(shape)


def _try_view(a, shape):
    """``a`` viewed as ``shape`` without copying, or None when the strides do not allow it."""
    if type(a) is np.ndarray:
        try:
            return a.reshape(shape, copy=False)  # the method: np.reshape adds a Python wrapper per call
        except ValueError:
            return None
    out = a.view()
    try:
        out.shape = shape
    except AttributeError:
        return None
    return out


@defop_sig("view", view=True)
def view(a, shape):
    shape = _infer_shape("view", shape, a.size)
    out = _try_view(a, shape)
    if out is None:
        raise ShapeError(f"view: cannot view a tensor of shape {a.shape} with strides "
                         f"{tuple(s // a.itemsize for s in a.strides)} as {shape} without copying (it is not "
                         f"contiguous); use .reshape(...) instead")
    return out


@view.def_backward
def _(ctx, g):
    return V.reshape(g, ctx.args[0].shape)


@defop("reshape", composite=True)
def reshape(a, shape):
    """A view when the strides allow one (as ``view``), else a contiguous copy (own version counter)."""
    shape = _infer_shape("reshape", tuple(shape), a.numel())
    if a._is_sharded or a._data.flags.c_contiguous or _try_view(a._data, shape) is not None:
        return call_view(view, a, (shape,))
    return call_view(view, V.contiguous(a), (shape,))


_reshape_kernel = reshape.kernels[Key.CPU]


def _tensor_reshape(self, *shape):
    """``Tensor.reshape``: where the strides allow a view (a contiguous tensor, or e.g. the q/k/v slices of a
    fused projection split into heads) the reshape is that view, so it goes to ``call_view`` without the
    dispatch of the composite, which would infer the shape and try the view twice (~1 us of a 4 us call
    on the CPU; a GPT step makes ~70). A tensor the view refuses, sharded tensors and library kernels
    for reshape take the composite (which copies, or raises a bad shape in reshape's words)."""
    shape = _shape_arg(shape)
    k = reshape.kernels
    if (not self._is_sharded and k.get(CPU_KEY) is _reshape_kernel and k.get(CUDA_KEY) is _reshape_kernel
            and AUTOGRAD_KEY not in k):
        try:
            return call_view(view, self, (shape,))
        except ShapeError:
            pass
    return reshape(self, shape)


Tensor.reshape = _tensor_reshape


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
    return call_view(permute, g, (tuple(inv),))


@defop("unsqueeze", view=True)
def unsqueeze(a, dim):
    d = wrap_dim("unsqueeze", dim, a.ndim + 1)
    return xp_of(a).expand_dims(a, d)


@unsqueeze.def_backward
def _(ctx, g):
    return V.reshape(g, ctx.args[0].shape)


@defop_sig("squeeze", view=True)
def squeeze(a, dim=None):
    if a.ndim == 0:
        if dim is not None:
            for d in ((dim,) if isinstance(dim, int) else dim):
                wrap_dim("squeeze", d, 0)
        return a.view()
    dims = wrap_dims("squeeze", dim, a.ndim)
    # a named dim whose size is not 1 is left alone (PyTorch)
    return xp_of(a).squeeze(a, axis=tuple(d for d in dims if a.shape[d] == 1))


@squeeze.def_backward
def _(ctx, g):
    return V.reshape(g, ctx.args[0].shape)


@defop_sig("transpose", view=True)
def transpose(a, dim0, dim1):
    if a.ndim == 0:
        wrap_dim("transpose", dim0, 0), wrap_dim("transpose", dim1, 0)
        return a.view()
    n = a.ndim
    if -n <= dim0 < n and -n <= dim1 < n:
        return a.swapaxes(dim0, dim1)  # the method: numpy's module function adds a Python wrapper per call
    return a.swapaxes(wrap_dim("transpose", dim0, n), wrap_dim("transpose", dim1, n))


@transpose.def_backward
def _(ctx, g):
    p = params(ctx, transpose)
    return call_view(transpose, g, (p["dim0"], p["dim1"]))


@defop("swapaxes", composite=True)
def swapaxes(a, axis0, axis1):
    return V.transpose(a, axis0, axis1)


@defop("swapdims", composite=True)
def swapdims(a, dim0, dim1):
    return V.transpose(a, dim0, dim1)


@defop("t", composite=True)
def t(a):
    if a.ndim > 2:
        raise ShapeError(f"t(): expects a tensor with <= 2 dimensions, but got a {a.ndim}-d tensor of shape "
                         f"{tuple(a.shape)}; use .transpose(dim0, dim1) or .mT")
    return call_view(transpose, a, (0, 1)) if a.ndim == 2 else call_view(view, a, (tuple(a.shape),))


def _dims_arg(opname, d, ndim):
    ds = (d,) if isinstance(d, int) else tuple(d)
    out = tuple(wrap_dim(opname, x, ndim) for x in ds)
    if len(set(out)) != len(out):
        raise ValueError(f"{opname}: repeated dim in {ds}")
    return out


@defop_sig("movedim", view=True)
def movedim(a, source, destination):
    src = _dims_arg("movedim", source, a.ndim)
    dst = _dims_arg("movedim", destination, a.ndim)
    if len(src) != len(dst):
        raise ValueError(f"movedim: source {source} and destination {destination} must have the same number "
                         f"of dims ({len(src)} vs {len(dst)})")
    if a.ndim == 0:
        return a.view()
    return xp_of(a).moveaxis(a, src, dst)


@movedim.def_backward
def _(ctx, g):
    p = params(ctx, movedim)
    return V.movedim(g, p["destination"], p["source"])


@defop("moveaxis", composite=True)
def moveaxis(a, source, destination):
    return V.movedim(a, source, destination)


@defop("flatten", composite=True)
def flatten(a, start_dim=0, end_dim=-1):
    n = a.ndim
    if n == 0:
        wrap_dim("flatten", start_dim, 0), wrap_dim("flatten", end_dim, 0)
        return V.reshape(a, (1,))
    s, e = wrap_dim("flatten", start_dim, n), wrap_dim("flatten", end_dim, n)
    if s > e:
        raise ShapeError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim}) "
                         f"for a {n}-d tensor")
    shp = tuple(a.shape)
    m = 1
    for x in shp[s:e + 1]:
        m *= x
    return V.reshape(a, shp[:s] + (m,) + shp[e + 1:])


@defop("unflatten", composite=True)
def unflatten(a, dim, sizes):
    d = wrap_dim("unflatten", dim, a.ndim)
    sizes = tuple(int(x) for x in sizes)
    if not sizes:
        raise ShapeError("unflatten: sizes must be non-empty")
    try:
        sizes = _infer_shape("unflatten", sizes, a.shape[d])
    except ShapeError:
        raise ShapeError(f"unflatten: sizes {sizes} don't multiply up to the size of dim {dim} "
                         f"({a.shape[d]}) of a tensor of shape {tuple(a.shape)}") from None
    return V.reshape(a, tuple(a.shape[:d]) + sizes + tuple(a.shape[d + 1:]))


@defop_sig("narrow", view=True)
def narrow(a, dim, start, length):
    if a.ndim == 0:
        raise ShapeError("narrow: cannot be applied to a 0-d tensor")
    d = wrap_dim("narrow", dim, a.ndim)
    n = a.shape[d]
    start, length = int(start), int(length)
    if not -n <= start <= n:
        raise IndexError(f"narrow: start ({start}) out of range for dimension {d} of size {n} "
                         f"(expected {-n}..{n})")
    if start < 0:
        start += n
    if length < 0 or start + length > n:
        raise IndexError(f"narrow: start ({start}) + length ({length}) exceeds dimension {d} of size {n}")
    return a[(slice(None),) * d + (slice(start, start + length),)]


@narrow.def_backward
def _(ctx, g):
    p = params(ctx, narrow)
    shape = p["a"].shape
    d = wrap_dim("narrow", p["dim"], len(shape))
    start = int(p["start"]) % max(shape[d], 1) if int(p["start"]) < 0 else int(p["start"])
    return V.slice_backward(g, shape, d, start, start + int(p["length"]), 1)


@defop("slice_backward")
def slice_backward(g, input_shape, dim, start, end, step):
    """Zeros of ``input_shape`` with ``g`` placed at ``[start:end:step]`` along ``dim`` (a backward helper)."""
    out = xp_of(g).zeros(tuple(input_shape), dtype=g.dtype)
    out[(slice(None),) * dim + (slice(start, end, step),)] = g
    return out


def _diag_view(xp, a, offset, d1, d2):
    """A writable strided view of the diagonal (numpy's diagonal() is read-only; PyTorch's is writable)."""
    n1, n2 = a.shape[d1], a.shape[d2]
    if offset >= 0:
        b = a[(slice(None),) * d2 + (slice(min(offset, n2), None),)]
        length = max(min(n1, n2 - offset), 0)
    else:
        b = a[(slice(None),) * d1 + (slice(min(-offset, n1), None),)]
        length = max(min(n1 + offset, n2), 0)
    keep = [i for i in range(a.ndim) if i not in (d1, d2)]
    shape = tuple(a.shape[i] for i in keep) + (length,)
    strides = tuple(b.strides[i] for i in keep) + (b.strides[d1] + b.strides[d2],)
    return xp.lib.stride_tricks.as_strided(b, shape=shape, strides=strides)


def _diag_dims(a_ndim, dim1, dim2):
    if a_ndim < 2:
        raise ShapeError(f"diagonal: needs a tensor with at least 2 dims, got {a_ndim}")
    d1, d2 = wrap_dim("diagonal", dim1, a_ndim), wrap_dim("diagonal", dim2, a_ndim)
    if d1 == d2:
        raise ShapeError(f"diagonal: dim1 and dim2 cannot be identical, got {dim1} and {dim2}")
    return d1, d2


@defop_sig("diagonal", view=True)
def diagonal(a, offset=0, dim1=0, dim2=1):
    d1, d2 = _diag_dims(a.ndim, dim1, dim2)
    return _diag_view(xp_of(a), a, int(offset), d1, d2)


@diagonal.def_backward
def _(ctx, g):
    p = params(ctx, diagonal)
    return V.diagonal_backward(g, p["a"].shape, p["offset"], p["dim1"], p["dim2"])


@defop("diagonal_backward")
def diagonal_backward(g, input_shape, offset, dim1, dim2):
    """Zeros of ``input_shape`` with ``g`` on the diagonal (a backward helper)."""
    xp = xp_of(g)
    d1, d2 = _diag_dims(len(input_shape), dim1, dim2)
    out = xp.zeros(tuple(input_shape), dtype=g.dtype)
    _diag_view(xp, out, int(offset), d1, d2)[...] = g
    return out


from . import shape_split, shape_copy  # noqa: E402,F401  (register the rest of the shape ops)
