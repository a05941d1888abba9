"""In-place ops and ``__setitem__``.

An in-place op computes its result with the out-of-place op, then writes it into this tensor's
storage (so views see it) and bumps the shared version counter. Under autograd the op runs on a
clone of the old value (so the saved input stays intact) and this tensor takes over the new node.
Outside autograd, add_/sub_/mul_/div_ of float tensors skip the result tensor and the copy: one
numpy or CuPy ufunc writes into the storage (``_direct``), bit-identical to the general path.
"""
from __future__ import annotations

import numpy as np

from . import backend as _be
from . import dispatcher as _disp
from . import dtype as _dt
from .dispatcher import ops
from .grad_mode import _state as _grad_state
from .grad_mode import is_grad_enabled, no_grad
from . import tensor as _tensor_mod
from .tensor import Tensor
from ..errors import AutogradError, DTypeError, ShapeError

V = ops.vt

_INIT = {"fill", "zero", "normal", "uniform", "exponential", "random", "bernoulli", "copy"}


def _check_leaf(t, name):
    if t.requires_grad and t.is_leaf and is_grad_enabled():
        raise AutogradError(f"{name}_: a leaf tensor that requires grad is being used in an in-place operation; "
                            f"wrap the update in `with vt.no_grad():` or operate on a clone")
    # only a view autograd tracks (it requires grad itself): .data, .detach() and views made under no_grad share
    # the leaf's memory and version counter but may be written, as in PyTorch (weight init does so)
    if t._base is not None and t.requires_grad and is_grad_enabled() and t._base.requires_grad and t._base.is_leaf:
        raise AutogradError(f"{name}_: a view of a leaf tensor that requires grad is being modified in place; "
                            f"wrap it in `with vt.no_grad():`")


def _write(t, res, name):
    td, rd = t._data, res._data
    if rd.shape != td.shape:
        raise ShapeError(f"{name}_: the result has shape {tuple(rd.shape)}, which does not match the tensor's "
                         f"shape {tuple(td.shape)}: in-place ops cannot change the shape")
    if res._dtype is not t._dtype:
        if res._dtype._cat > t._dtype._cat:  # torch.can_cast: no float -> int -> bool
            raise DTypeError(f"{name}_: result type {res._dtype.name} can't be cast to the tensor's dtype "
                             f"{t._dtype.name}; use the out-of-place op or convert the tensor first")
        rd = rd.astype(td.dtype)  # same-kind downcast, as PyTorch (float64 result into a float32 tensor)
    if not _writeable(td):
        raise _read_only(f"{name}_", t)
    td[...] = rd
    t._vc.v += 1


def _read_only(what, t):
    return RuntimeError(f"{what}: the tensor of shape {tuple(t.shape)} is read-only (an expanded or broadcast "
                        f"view, or a tensor over a read-only numpy array); write into a .clone() instead")


def _writeable(a):
    if a.size == 0:
        return True  # nothing to write (CuPy may give an empty array zero strides)
    w = getattr(a.flags, "writeable", None)
    if w is not None:
        return w
    # CuPy has no writeable flag: a broadcast view (a 0 stride over a dim > 1) must not be written
    return not any(s == 0 and n > 1 for s, n in zip(a.strides, a.shape))


def _tensors_in(args):
    return any(isinstance(a, Tensor) and a.requires_grad for a in args)


def apply(t: Tensor, name: str, args, kwargs):
    if name in _INIT:
        return _init_op(t, name, args, kwargs)
    recording = False
    if _grad_state.enabled:
        _check_leaf(t, name)
        recording = t.requires_grad or _tensors_in(args)
    op = getattr(V, name)
    if recording:
        if t._base is not None:
            raise NotImplementedError(f"{name}_ on a view that takes part in autograd is not supported yet; "
                                      f"use the out-of-place op ({name}) instead")
        res = op(V.clone(t), *args, **kwargs)
        _write(t, res, name)
        t.grad_fn = res.grad_fn
        t._output_nr = res._output_nr
        t.requires_grad = res.requires_grad
        return t
    if _direct(t, name, args, kwargs):
        return t
    res = op(t, *args, **kwargs)
    _write(t, res, name)
    return t


_DIRECT = None  # ops.elementwise.DIRECT_INPLACE, looked up once (the ops register after this module)
_FLOATS = (_dt.float32, _dt.float64)


def _direct(t, name, args, kwargs):
    """``t.<name>_(other[, alpha=])`` as one numpy ufunc writing into t's storage, when the result is
    bit-identical to the out-of-place op's (same dtype, built-in kernels, no autocast/sharding) and
    needs no check the slow path makes (a broadcast that changes t's shape or a read-only view fall
    back, and raise there). True when done."""
    global _DIRECT
    if _DIRECT is None:
        from .ops.elementwise import DIRECT_INPLACE
        _DIRECT = DIRECT_INPLACE
    entry = _DIRECT.get(name)
    if entry is None or len(args) != 1 or t._dtype not in _FLOATS or t._is_sharded \
            or _disp._autocast_hook is not None:
        return False
    chain, ufunc = entry
    a = t._data
    cuda = type(a) is not np.ndarray
    if cuda and not _cuda_ok(chain, a):
        return False
    for op, kernel in chain:  # an override of the generic kernel also reaches CUDA through the fused fallbacks
        if op.kernels.get(_disp.CPU_KEY) is not kernel:
            return False
    alpha = 1
    if kwargs:
        if name in ("add", "sub") and len(kwargs) == 1 and "alpha" in kwargs:
            alpha = kwargs["alpha"]
            if type(alpha) not in (int, float):
                return False
        elif not (name == "div" and len(kwargs) == 1 and kwargs.get("rounding_mode", 0) is None):
            return False
    o = args[0]
    if isinstance(o, Tensor):
        if o._dtype is not t._dtype or o._device is not t._device or o._is_sharded:
            return False
        b = o._data
    elif type(o) in (int, float):  # a Python number never lifts a float tensor
        b = o
    else:
        return False
    if cuda:
        # CuPy ufuncs do not guard against overlapping operands, and the float4 add kernel fuses
        # a + alpha*b into one rounding: alpha 1 and a disjoint (or identical) operand only
        if alpha != 1 or (isinstance(o, Tensor) and not _same_or_disjoint(a, b)):
            return False
        try:
            with _be.device_guard(t._device):
                ufunc = getattr(_be.cupy_module(), ufunc.__name__)
                ufunc(a, b, out=a)
        except ValueError:  # b does not broadcast to t's shape: the general path raises the clear error
            return False
        t._vc.v += 1
        return True
    if not a.flags.writeable:
        return False
    if alpha != 1:
        b = alpha * b  # as the out-of-place kernels compute ``a + alpha * b``
    try:
        if name == "div":  # true_divide's kernel is silent on /0 (PyTorch gives inf/nan quietly)
            with np.errstate(all="ignore"):
                ufunc(a, b, out=a)
        else:
            ufunc(a, b, out=a)
    except ValueError:  # the result would not fit t's shape: numpy checks before writing anything
        return False
    t._vc.v += 1
    return True


def _cuda_ok(chain, a):
    """A writable CuPy array whose ops run the built-in kernels (the generic one or its fused wrapper)."""
    if not _be.is_cuda_array(a) or not _writeable(a):
        return False
    for op, kernel in chain:
        k = op.kernels.get(_disp.CUDA_KEY)
        if k is not kernel and getattr(k, "__module__", None) != "vibetensor.cuda.fused":
            return False
    return True


def _same_or_disjoint(a, b):
    if b is a:
        return True
    if not (a.flags.c_contiguous and b.flags.c_contiguous):
        return False
    pa, pb = a.data.ptr, b.data.ptr
    if pa == pb and a.shape == b.shape:
        return True
    return pa + a.nbytes <= pb or pb + b.nbytes <= pa


def _zero(t):
    """zero_ in place without a temporary: one cudaMemsetAsync for contiguous CUDA memory (optimizer
    zero_grad runs it once per parameter), else a fill."""
    a = t._data
    if _be.is_cuda_array(a) and a.flags.c_contiguous:
        if a.nbytes:
            with _be.device_guard(t._device):
                a.data.memset_async(0, a.nbytes)
    else:
        a.fill(0)
    t._vc.v += 1


def _init_op(t, name, args, kwargs):
    """zero_/fill_/copy_ and the random fills. Where autograd records (grad mode on, and t or the value
    requires grad) the new contents go in through index_put on a clone, as ``t[...] = value`` does: the
    gradient reaches the value (summed over a broadcast) and t's previous history gets zeros, as in PyTorch."""
    from . import factories as F
    _check_leaf(t, name)
    if not t._is_sharded and not _writeable(t._data):
        raise _read_only(f"{name}_", t)
    src = None
    if name == "fill":
        src = args[0] if args else kwargs["value"]
    elif name == "copy":
        src = args[0] if args else kwargs["src"]
    recording = is_grad_enabled() and (t.requires_grad or (isinstance(src, Tensor) and src.requires_grad))
    if recording:
        if t._base is not None:
            raise NotImplementedError(f"{name}_ on a view that takes part in autograd is not supported yet; "
                                      f"write into the base tensor (or build the result out of place)")
        if isinstance(src, Tensor):
            if name == "fill" and src.ndim != 0:
                raise ValueError(f"fill_ only supports a 0-dimension value tensor, got shape {tuple(src.shape)}")
            val = src.to(device=t.device, dtype=t.dtype)
        else:
            with no_grad():
                val = F.tensor(src, dtype=t.dtype, device=t.device) if src is not None else _init_value(t, name, args, kwargs)
        res = V.index_put(V.clone(t), (Ellipsis,), val)
        _write(t, res, name)
        t.grad_fn = res.grad_fn
        t._output_nr = res._output_nr
        t.requires_grad = True
        return t
    if name == "zero" and not t._is_sharded:
        _zero(t)
        return t
    with no_grad():
        if name == "zero":
            res = F.zeros_like(t)
        elif name == "fill":
            res = F.full_like(t, src.item() if isinstance(src, Tensor) else src)
        elif name == "copy":
            if not isinstance(src, Tensor):
                src = F.tensor(src, dtype=t.dtype, device=t.device)
            res = src.to(device=t.device).to(t.dtype)
            if tuple(res.shape) != tuple(t.shape):
                res = V.expand(res, tuple(t.shape))
            t._data[...] = res._data
            t._vc.v += 1
            return t
        else:
            t._data[...] = _init_value(t, name, args, kwargs)._data
            t._vc.v += 1
            return t
    _write(t, res, name)
    return t


def _init_value(t, name, args, kwargs):
    """The new contents of ``t.<name>_(...)`` for zero_ and the random fills, as a tensor of t's shape."""
    from . import factories as F
    from .random import gen_for
    if name == "zero":
        return F.zeros_like(t)
    g = gen_for(kwargs.pop("generator", None), t.device)
    shape, npdt = tuple(t.shape), t.dtype.np
    if name == "normal":
        mean = args[0] if len(args) > 0 else kwargs.get("mean", 0.0)
        std = args[1] if len(args) > 1 else kwargs.get("std", 1.0)
        arr = g.normal(shape, npdt, mean, std)
    elif name == "uniform":
        a = args[0] if len(args) > 0 else kwargs.get("from", kwargs.get("a", 0.0))
        b = args[1] if len(args) > 1 else kwargs.get("to", kwargs.get("b", 1.0))
        arr = g.random(shape, npdt) * (b - a) + a
    elif name == "exponential":
        lam = args[0] if args else kwargs.get("lambd", 1.0)
        from .backend import xp_of
        u = g.random(shape, npdt)
        arr = (-xp_of(u).log1p(-u) / lam).astype(npdt)
    elif name == "bernoulli":
        p = args[0] if args else kwargs.get("p", 0.5)
        arr = (g.random(shape, "float32" if not t.dtype.is_floating_point else npdt) < p).astype(npdt)
    else:  # random_(from, to)
        lo = args[0] if len(args) > 0 else 0
        hi = args[1] if len(args) > 1 else 2 ** 24
        arr = g.integers(lo, hi, shape, npdt)
    return Tensor._make(arr, t._device)


def setitem(t: Tensor, index, value):
    from . import factories as F
    recording = is_grad_enabled() and (t.requires_grad or (isinstance(value, Tensor) and value.requires_grad))
    if recording:
        _check_leaf(t, "setitem")
        if t._base is not None:
            raise NotImplementedError("__setitem__ on a view that takes part in autograd is not supported yet; "
                                      "index the base tensor instead")
        if not isinstance(value, Tensor):
            value = F.tensor(value, dtype=t.dtype, device=t.device)
        res = V.index_put(V.clone(t), index, value)
        t._data[...] = res._data
        t._vc.v += 1
        t.grad_fn = res.grad_fn
        t._output_nr = res._output_nr
        t.requires_grad = True
        return
    idx = tuple(i._data if isinstance(i, Tensor) else i for i in index)
    if isinstance(value, Tensor):
        if value._device != t._device:
            if value.ndim == 0:
                value = value.item()
            else:
                from ..errors import DeviceMismatchError
                raise DeviceMismatchError(f"__setitem__: value is on {value._device} but the tensor is on "
                                          f"{t._device}; move it with .to(device)")
        else:
            value = value._data
    try:
        tgt = t._data
        if len(idx) > 2:  # an int apart from a list/tensor index: PyTorch's dimension order, not numpy's
            from .ops.index import torch_order
            tgt, idx = torch_order(tgt, idx)
        tgt[idx] = value
    except (ValueError, IndexError, TypeError) as e:
        raise _setitem_error(t, index, value, e) from None
    t._vc.v += 1


def _setitem_error(t, index, value, e):
    """numpy's refusal of ``t[index] = value``, said in the tensor's terms: a bad index gets getitem's own
    check (dtype, bounds, mask shape), then a read-only target, a value of the wrong type, or shapes."""
    from .ops.index import _normalize
    _normalize("__setitem__", t, index)  # raises IndexError for any index getitem would refuse
    msg = str(e)
    if "read-only" in msg:
        return _read_only("__setitem__", t)
    if isinstance(e, TypeError) or "could not convert" in msg or "invalid literal" in msg:
        return TypeError(f"__setitem__: cannot assign {type(value).__name__} {value!r:.40} to a tensor of dtype "
                         f"{t.dtype.name}; assign numbers or tensors")
    return ShapeError(f"__setitem__ on a tensor of shape {tuple(t.shape)}: {e}")


_tensor_mod._inplace_apply = apply
