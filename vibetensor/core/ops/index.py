"""``t[index]`` (getitem) and ``index_put`` (out-of-place ``t[index] = value``).

The public ops are composites that normalise the index once -- Python ints, slices, None, Ellipsis,
bool masks, integer tensors/lists/arrays -- check it against the shape (clear errors), move index
tensors to the data's device, then call one of two kernels:

* ``vt_impl::getitem``: basic indexing only (ints, slices, None, Ellipsis): a view sharing storage
  and the version counter, as in PyTorch.
* ``vt_impl::index``: any advanced index: a copy. numpy's rules match PyTorch's but for where the dims
  of advanced indices go: PyTorch applies Python ints (and 0-d integer tensors) as a plain ``select``
  first, so they are not advanced indices, and an Ellipsis standing for no dims separates nothing.
  ``x[0, :, [1, 2]]`` has shape (4, 2) in PyTorch for ``x`` of shape (3, 4, 5), numpy's (2, 4).
  ``torch_order`` rewrites such an index into a basic step (a view) and an advanced step on it; the
  kernels, their backward and ``__setitem__`` go through it.

Backward scatters the gradient into zeros of the input's shape, accumulating repeated indices.
Negative slice steps raise ValueError as in PyTorch (numpy would allow them).
"""
from __future__ import annotations

import operator

import numpy as np

from .. import dtype as _dt
from ..dispatcher import defop
from ._util import V, sum_to, xp_of
from .shape_util import add_at

_Tensor = None


def _tensor_cls():
    global _Tensor
    if _Tensor is None:
        from ..tensor import Tensor
        _Tensor = Tensor
    return _Tensor


def _as_int(x):
    try:
        return operator.index(x)
    except TypeError:
        raise TypeError(f"slice indices must be integers or None, got {type(x).__name__} ({x!r})") from None


def _check_slice(s):
    step = 1 if s.step is None else _as_int(s.step)
    if step <= 0:
        raise ValueError(f"indexing: slice step must be positive, got {step} (PyTorch does not support negative "
                         f"steps); use .flip(dim) to reverse a dimension")
    start = None if s.start is None else _as_int(s.start)
    stop = None if s.stop is None else _as_int(s.stop)
    if start is s.start and stop is s.stop and step is s.step:
        return s
    return slice(start, stop, None if s.step is None else step)


def _normalize(opname, a, index):
    """-> (tuple for the kernel, advanced?) with every component checked against ``a.shape``."""
    T = _tensor_cls()
    dev = a.device
    shape = tuple(a.shape)
    items, adv = [], False
    for it in index:
        if it is None or it is Ellipsis:
            items.append(it)
        elif isinstance(it, slice):
            items.append(_check_slice(it))
        elif isinstance(it, bool) or isinstance(it, np.bool_):
            items.append(bool(it))  # numpy/PyTorch: a scalar bool adds a dim of size 1 (or 0)
            adv = True
        elif isinstance(it, (int, np.integer)):
            items.append(int(it))
        elif isinstance(it, T):
            if it._dtype is _dt.bool_ or it._dtype is _dt.uint8:
                m = it if it._dtype is _dt.bool_ else V.ne(it, 0)
                items.append(m if m.device == dev else m.to(dev))
                adv = True
            elif it._dtype.is_floating_point:
                raise IndexError(f"{opname}: tensors used as indices must be long, int, uint8 or bool tensors, "
                                 f"got {it._dtype.name}")
            elif it.ndim == 0:
                items.append(int(it.item()))  # a 0-d integer tensor acts as an int (PyTorch)
            else:
                items.append(it if it.device == dev else it.to(dev))
                adv = True
        elif isinstance(it, (list, tuple, np.ndarray)) or hasattr(it, "__array__"):
            arr = np.asarray(_unwrap_list(it))
            if arr.dtype == object or arr.dtype.kind not in "biu" and arr.size:
                raise IndexError(f"{opname}: index lists must hold only integers or bools, got {it!r}")
            if arr.dtype.kind not in "biu":
                arr = arr.astype(np.int64)  # [] -> an empty integer index
            from ..factories import tensor
            items.append(tensor(arr, device=dev))
            adv = True
        else:
            raise IndexError(f"{opname}: only integers, slices (`:`), ellipsis (`...`), None and integer or "
                             f"boolean tensors are valid indices, got {type(it).__name__} ({it!r})")
    _check_against_shape(opname, items, shape)
    return tuple(items), adv


def _unwrap_list(it):
    T = _tensor_cls()
    if isinstance(it, (list, tuple)):
        return [_unwrap_list(x) for x in it]
    if isinstance(it, T):
        return it.detach().cpu().numpy()
    return it


def _check_against_shape(opname, items, shape):
    T = _tensor_cls()
    used = sum(1 if not isinstance(x, T) or x._dtype is not _dt.bool_ else max(x.ndim, 0)
               for x in items if x is not None and x is not Ellipsis and not isinstance(x, bool))
    n_ell = sum(1 for x in items if x is Ellipsis)
    if n_ell > 1:
        raise IndexError(f"{opname}: an index can only have a single ellipsis ('...')")
    if used > len(shape):
        raise IndexError(f"{opname}: too many indices for a tensor of dimension {len(shape)} (shape {shape}): "
                         f"got {used}")
    d = 0
    for x in items:
        if x is None or isinstance(x, bool):
            continue
        if x is Ellipsis:
            d += len(shape) - used
            continue
        if isinstance(x, slice):
            d += 1
        elif isinstance(x, int):
            n = shape[d]
            if not -n <= x < n:
                raise IndexError(f"{opname}: index {x} is out of bounds for dimension {d} with size {n}")
            d += 1
        elif x._dtype is _dt.bool_:
            k = x.ndim
            if tuple(x.shape) != shape[d:d + k]:
                raise IndexError(f"{opname}: the shape of the mask {tuple(x.shape)} at index {d} does not match "
                                 f"the shape of the indexed tensor {shape[d:d + k]} starting at dimension {d}")
            d += k
        else:
            n = shape[d]
            if x.numel():
                arr = x._data
                lo, hi = int(arr.min()), int(arr.max())
                if lo < -n or hi >= n:
                    bad = hi if hi >= n else lo
                    raise IndexError(f"{opname}: index {bad} is out of bounds for dimension {d} with size {n}")
            d += 1


def _with_ellipsis(idx):
    # numpy returns a scalar copy for a full integer index; a trailing Ellipsis keeps a 0-d view
    return idx if any(x is Ellipsis for x in idx) else idx + (Ellipsis,)


_KINDS = {slice: 0, type(None): 0, int: 1, bool: 2, type(Ellipsis): 3}


def _kind(x):
    """0: slice or None; 1: an integer (Python, numpy scalar, 0-d integer array); 2: advanced; 3: Ellipsis."""
    k = _KINDS.get(type(x))
    if k is not None:
        return k
    if isinstance(x, (bool, np.bool_)):
        return 2
    if isinstance(x, (int, np.integer)):
        return 1
    if getattr(x, "ndim", None) == 0 and x.dtype.kind in "iu":
        return 1
    return 2


def _dims_taken(x):
    """Dimensions of the indexed array an advanced index consumes: k for a k-d bool mask, 0 for a scalar
    bool, else 1."""
    if isinstance(x, (bool, np.bool_)):
        return 0
    if not (hasattr(x, "ndim") and hasattr(x, "dtype")):
        x = np.asarray(_unwrap_list(x))  # a host-side list, never the (maybe CuPy) data
    return x.ndim if x.dtype == bool else 1


def torch_order(arr, idx):
    """-> ``(target, index)`` such that ``target[index]`` (read or assigned) is PyTorch's ``arr[idx]``.

    ``arr`` is a numpy or CuPy array, ``idx`` a tuple of raw index items (ints, slices, None, Ellipsis,
    bools, integer or bool arrays or lists). Both put the dims of the advanced indices in place when the
    indices are adjacent, else first, but they judge adjacency differently: PyTorch applies the integers as
    a ``select`` first (they are not advanced indices) and an Ellipsis that stands for no dims separates
    nothing; numpy counts the integers as advanced indices and any Ellipsis as a separator. Where the two
    differ, ``target`` is the view ``arr[ints, slices, None, ...]`` and ``index`` the advanced indices on
    it; otherwise ``(arr, idx)`` unchanged (the common cases cost one length check).
    """
    if len(idx) < 3:  # a difference needs an advanced index, an int or Ellipsis, and a slice or Ellipsis
        return arr, idx
    kinds = [_kind(x) for x in idx]
    if 2 not in kinds or (1 not in kinds and 3 not in kinds):
        return arr, idx
    n = len(kinds)
    first = lo = kinds.index(2)
    last = hi = n - 1 - kinds[::-1].index(2)
    if 1 in kinds:
        lo, hi = min(lo, kinds.index(1)), max(hi, n - 1 - kinds[::-1].index(1))
    if 0 not in kinds[lo:hi] and 3 not in kinds[lo:hi]:
        return arr, idx  # numpy sees one group too (at the same place: ints before it add no dims)
    # numpy puts the advanced dims first; PyTorch in place if adjacent without the ints and empty Ellipsis
    n_ell = 0
    if 3 in kinds:
        n_ell = arr.ndim - sum(_dims_taken(x) if k == 2 else 1 for x, k in zip(idx, kinds)
                               if k == 1 or k == 2 or k == 0 and x is not None)
    between, before = kinds[first:last], kinds[:first]
    if 0 in between or n_ell and 3 in between or not (0 in before or n_ell and 3 in before):
        return arr, idx  # apart in PyTorch as well, or PyTorch's place is the front too
    basic, adv = [], []
    for x, k in zip(idx, kinds):
        if k == 1:
            basic.append(int(x))  # numpy copies for a 0-d array index; an int gives a view
        elif k == 2:
            basic.extend([slice(None)] * _dims_taken(x))
            adv.append(x)
        else:
            basic.append(x)
            adv.extend([slice(None)] * (n_ell if k == 3 else 1))  # a None's new dim is a plain dim now
    if 3 not in kinds:
        basic.append(Ellipsis)  # a view even where the ints take every dim
    return arr[tuple(basic)], tuple(adv)


def _has_tensor(index):
    T = _tensor_cls()
    return any(isinstance(x, T) for x in index)


@defop("getitem", composite=True)
def getitem(a, index):
    """``a[index]``: a view for basic indices, a copy for advanced ones."""
    if type(index) is not tuple:
        index = (index,)
    idx, adv = _normalize("getitem", a, index)
    if adv:
        return _index(a, idx)
    return _getitem_view(a, idx)


@defop("getitem", namespace="vt_impl", view=True)
def _getitem_view(a, idx):
    return a[_with_ellipsis(idx)]


@_getitem_view.def_backward
def _(ctx, g):
    a, idx = ctx.args
    return _index_grad(g, tuple(a.shape), idx, False)


@defop("index", namespace="vt_impl", save=(1,))
def _index(a, idx):
    if len(idx) > 2:
        a, idx = torch_order(a, idx)
    return a[idx]


@_index.def_backward
def _(ctx, g):
    a, idx = ctx.args
    return (_index_grad(g, tuple(a.shape), idx, True),) + (None,) * sum(1 for x in idx if hasattr(x, "_data"))


@defop("index_grad", namespace="vt_impl")
def _index_grad(g, shape, idx, accumulate):
    """Zeros of ``shape`` with ``g`` written (accumulated for advanced indices) at ``idx``."""
    xp = xp_of(g)
    out = xp.zeros(shape, dtype=g.dtype)
    if accumulate:
        tgt, idx = torch_order(out, idx)
        add_at(xp, tgt, _masks_to_ints(xp, idx), g)
    else:
        out[_with_ellipsis(idx)] = g
    return out


def _masks_to_ints(xp, idx):
    # a bool mask of k dims is k integer index arrays (numpy's rule): accumulating kernels take ints only
    out = []
    for x in idx:
        if hasattr(x, "dtype") and x.dtype == bool:
            out.extend(xp.nonzero(x)) if x.ndim else out.append(x)
        else:
            out.append(x)
    return tuple(out)


@defop("index_put", composite=True)
def index_put(a, index, value, accumulate=False):
    """A copy of ``a`` with ``a[index] = value`` (or ``+=`` with ``accumulate=True``, repeated indices
    adding up); value broadcasts to ``a[index]`` and is cast to ``a``'s dtype."""
    if type(index) is not tuple:
        index = (index,)
    idx, _ = _normalize("index_put", a, index)
    T = _tensor_cls()
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__") and not isinstance(value, T):
        from ..factories import tensor
        value = tensor(value, dtype=a.dtype, device=a.device)
    if isinstance(value, T) and value.device != a.device:
        if value.ndim == 0:
            value = value.item()
        else:
            from ...errors import DeviceMismatchError
            raise DeviceMismatchError(f"index_put: value is on {value.device} but the tensor is on {a.device}; "
                                      f"move it with .to(device)")
    return _index_put(a, idx, value, bool(accumulate))


@defop("index_put", namespace="vt_impl", save=(1,))
def _index_put(a, idx, value, accumulate):
    from ...errors import ShapeError
    xp = xp_of(a)
    out = a.copy()
    v = xp.asarray(value).astype(a.dtype, copy=False) if hasattr(value, "dtype") else value
    tgt, tidx = torch_order(out, idx)
    try:
        if accumulate:
            add_at(xp, tgt, _masks_to_ints(xp, tidx), v)
        else:
            tgt[_with_ellipsis(tidx)] = v
    except ValueError as e:
        shp = tgt[_with_ellipsis(tidx)].shape
        raise ShapeError(f"index_put: value of shape {tuple(getattr(value, 'shape', ()))} cannot be broadcast to "
                         f"the indexed shape {tuple(shp)} ({e})") from None
    return out


@_index_put.def_backward
def _(ctx, g):
    a, idx, value, accumulate = ctx.args
    n_idx = sum(1 for x in idx if hasattr(x, "_data"))
    ga = g if accumulate else _index_put(g, idx, 0, False)
    grads = [ga] + [None] * n_idx
    if hasattr(value, "shape"):
        sel = _index(g, idx) if n_idx or any(isinstance(x, bool) for x in idx) else _getitem_view(g, idx)
        if sel.ndim < value.ndim:  # numpy/PyTorch drop leading size-1 dims of the value
            sel = V.reshape(sel, (1,) * (value.ndim - sel.ndim) + tuple(sel.shape))
        gv = sum_to(sel, tuple(value.shape))
        grads.append(gv if gv.dtype is value.dtype else gv.to(value.dtype))
    return tuple(grads)


from . import index_gather, index_sort  # noqa: E402,F401  (register the rest of the index ops)
