"""Multi-output views (split, chunk, unbind) and list ops (cat, stack)."""
from __future__ import annotations

import math

import numpy as np

from .. import dispatcher as _disp
from ..dispatcher import defop
from ._util import V, wrap_dim, xp_of
from .shape_util import defop_sig, params, promote_arrays
from ...errors import ShapeError


def _split_sizes(n, split_size_or_sections, dim):
    s = split_size_or_sections
    if isinstance(s, int) or hasattr(s, "__index__") and not isinstance(s, (list, tuple)):
        s = int(s)
        if s < 0 or (s == 0 and n > 0):
            raise ValueError(f"split: split_size must be a positive integer (0 only for an empty dimension), "
                             f"got {s} for dimension {dim} of size {n}")
        if n == 0:
            return [0]
        return [s] * (n // s) + ([n % s] if n % s else [])
    sizes = [int(x) for x in s]
    if any(x < 0 for x in sizes) or sum(sizes) != n:
        raise ShapeError(f"split: split sizes {sizes} must be non-negative and sum exactly to {n} (the size of "
                         f"dimension {dim}), but they sum to {sum(sizes)}")
    return sizes


@defop_sig("split", view=True)
def split(a, split_size_or_sections, dim=0):
    if a.ndim == 0:
        raise ShapeError("split: cannot split a 0-d tensor")
    d = wrap_dim("split", dim, a.ndim)
    out, off = [], 0
    for s in _split_sizes(a.shape[d], split_size_or_sections, d):
        out.append(a[(slice(None),) * d + (slice(off, off + s),)])
        off += s
    return tuple(out)


@split.def_backward
def _(ctx, *grads):
    p = params(ctx, split)
    d = wrap_dim("split", p["dim"], p["a"].ndim)
    joined = join_adjacent(grads, d)
    return V.cat(list(grads), d) if joined is None else joined


def join_adjacent(ts, d):
    """``cat(ts, d)`` as a view when the CUDA tensors ``ts`` already lie side by side along d in one buffer
    (equal strides, each starting where the previous ends): flash attention writes the gradients of a
    fused q/k/v projection's thirds that way (``flash._grads_like``), so split's backward costs no copy.
    The view's ``_base`` is ts[0], so a leaf that receives it as its gradient copies it first (autograd's
    rule for views). None when that does not apply."""
    t0 = ts[0] if ts else None
    T = _disp._Tensor
    if type(t0) is not T or len(ts) < 2 or t0._device.type != "cuda":
        return None
    a0 = t0._data
    strides, shape = a0.strides, list(a0.shape)
    step = strides[d]
    if step <= 0 or shape[d] == 0:
        return None
    ptr = a0.data.ptr + shape[d] * step
    for t in ts[1:]:
        if type(t) is not T or t._device is not t0._device or t._dtype is not t0._dtype:
            return None
        a = t._data
        if a.ndim != a0.ndim or a.strides != strides or a.data.ptr != ptr or a.shape[d] == 0 or any(
                n != m for i, (n, m) in enumerate(zip(a.shape, a0.shape)) if i != d):
            return None
        ptr += a.shape[d] * step
        shape[d] += a.shape[d]
    out = T._make(type(a0)(tuple(shape), a0.dtype, memptr=a0.data, strides=strides), t0._device)
    out._vc = t0._vc
    out._base = t0 if t0._base is None else t0._base
    return out


@defop("chunk", composite=True)
def chunk(a, chunks, dim=0):
    chunks = int(chunks)
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive integer, got {chunks}")
    if a.ndim == 0:
        raise ShapeError("chunk: cannot chunk a 0-d tensor")
    n = a.shape[wrap_dim("chunk", dim, a.ndim)]
    return V.split(a, max(math.ceil(n / chunks), 1 if n else 0), dim)


@defop("tensor_split", composite=True)
def tensor_split(a, sections, dim=0):
    """``sections`` parts as equal as possible (the first n % sections get one more), or split at indices."""
    d = wrap_dim("tensor_split", dim, a.ndim)
    n = a.shape[d]
    if isinstance(sections, int):
        if sections <= 0:
            raise ValueError(f"tensor_split: sections must be positive, got {sections}")
        q, r = divmod(n, sections)
        sizes = [q + 1] * r + [q] * (sections - r)
    else:  # split before each index, with Python slice semantics
        n_idx = [int(i) + n if int(i) < 0 else int(i) for i in sections]
        bounds = [0] + [min(max(i, 0), n) for i in n_idx] + [n]
        return tuple(V.narrow(a, d, bounds[k], max(bounds[k + 1] - bounds[k], 0)) for k in range(len(bounds) - 1))
    return V.split(a, sizes, d)


@defop_sig("unbind", view=True)
def unbind(a, dim=0):
    if a.ndim == 0:
        raise ShapeError("unbind: cannot unbind a 0-d tensor")
    d = wrap_dim("unbind", dim, a.ndim)
    pre = (slice(None),) * d
    return tuple(a[pre + (i, Ellipsis)] for i in range(a.shape[d]))


@unbind.def_backward
def _(ctx, *grads):
    p = params(ctx, unbind)
    return V.stack(list(grads), wrap_dim("unbind", p["dim"], p["a"].ndim))


def _check_list(opname, tensors):
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{opname}: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError(f"{opname}: expected a non-empty list of tensors")
    for i, x in enumerate(tensors):
        if not hasattr(x, "ndim"):
            raise TypeError(f"{opname}: element {i} is a {type(x).__name__}, not a tensor")


def _legacy_empty(x):
    return x.ndim == 1 and x.shape[0] == 0


@defop_sig("cat")
def cat(tensors, dim=0):
    _check_list("cat", tensors)
    if any(x.ndim == 0 for x in tensors):
        i = next(i for i, x in enumerate(tensors) if x.ndim == 0)
        raise ShapeError(f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated; "
                         f"use stack or unsqueeze it first")
    arrs, _ = promote_arrays(list(tensors))
    # PyTorch skips legacy empty 1-d tensors of shape (0,) whatever the others' shape
    keep = [x for x in arrs if not _legacy_empty(x)] or arrs[:1]
    ref = keep[0]
    d = wrap_dim("cat", dim, ref.ndim)
    for i, x in enumerate(arrs):
        if _legacy_empty(x) and x is not ref:
            continue
        if x.ndim != ref.ndim or any(x.shape[k] != ref.shape[k] for k in range(ref.ndim) if k != d):
            raise ShapeError(f"cat: sizes of tensors must match except in dimension {d}: tensor 0 has shape "
                             f"{tuple(ref.shape)} and tensor {i} has shape {tuple(x.shape)}")
    if len(keep) == 1:
        return keep[0].copy()
    xp = xp_of(ref)
    if xp is not np:
        from ...cuda import kernels
        out = kernels.cat(keep, d)  # one vectorised launch (CuPy copies piece by piece)
        if out is not None:
            return out
    return xp.concatenate(keep, axis=d)


@cat.def_backward
def _(ctx, g):
    metas = params(ctx, cat)["tensors"]
    ref = next((m for m in metas if not (m.ndim == 1 and m.shape[0] == 0)), metas[0])
    d = wrap_dim("cat", params(ctx, cat)["dim"], ref.ndim)
    sizes = [m.shape[d] for m in metas if not (m.ndim == 1 and m.shape[0] == 0) or m is ref]
    parts = iter(V.split(g, sizes, d))
    out = []
    for m in metas:
        if m.ndim == 1 and m.shape[0] == 0 and m is not ref:
            from ..factories import zeros
            out.append(zeros((0,), dtype=m.dtype, device=m.device))
        else:
            p = next(parts)
            out.append(p if p.dtype is m.dtype else p.to(m.dtype))
    return tuple(out)


@defop("concat", composite=True)
def concat(tensors, dim=0):
    return V.cat(tensors, dim)


@defop("concatenate", composite=True)
def concatenate(tensors, axis=0):
    return V.cat(tensors, axis)


@defop_sig("stack")
def stack(tensors, dim=0):
    _check_list("stack", tensors)
    arrs, _ = promote_arrays(list(tensors))
    ref = arrs[0]
    for i, x in enumerate(arrs):
        if x.shape != ref.shape:
            raise ShapeError(f"stack: expects each tensor to be equal size, but got {tuple(ref.shape)} at "
                             f"entry 0 and {tuple(x.shape)} at entry {i}")
    d = wrap_dim("stack", dim, ref.ndim + 1)
    return xp_of(ref).stack(arrs, axis=d)


@stack.def_backward
def _(ctx, g):
    p = params(ctx, stack)
    metas = p["tensors"]
    d = wrap_dim("stack", p["dim"], metas[0].ndim + 1)
    return tuple(x if x.dtype is m.dtype else x.to(m.dtype) for x, m in zip(V.unbind(g, d), metas))
