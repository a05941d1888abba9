"""Tensor: a backend array + device + dtype + autograd metadata.

Views share storage (numpy/CuPy views) and a version counter; in-place ops bump it, and backward
refuses to use a saved tensor whose version moved (as PyTorch does). Sharded tensors
(``vibetensor.fabric.DTensor``) subclass this and set ``_is_sharded``.
"""
from __future__ import annotations

import numpy as np

from . import backend as _be
from . import dispatcher as _disp
from . import dtype as _dt
from .device import CPU, Device
from .device import device as _as_device
from .size_args import _shape_arg
from ..errors import AutogradError, ShapeError

V = _disp.ops.vt  # every op, looked up at call time
_call_view = _disp.call_view
_call_binary = _disp.call_binary
_FROM_NP = _dt._FROM_NP
_ARRAY_TYPES = {np.ndarray}  # array types taken as they are (CuPy's joins on first sight)


class _VersionCounter:
    """Shared by a tensor and its views; bumped by in-place ops. ``v`` reads the class's 0 until the first
    bump writes the instance's own: one is made per op output, and an ``__init__`` call would cost more
    than the object."""
    v = 0


class Tensor:
    __slots__ = ("_data", "_device", "_dtype", "requires_grad", "_grad", "grad_fn", "_output_nr", "_vc",
                 "_base", "_accum", "_post_hooks", "_retains_grad", "__weakref__", "__dict__")
    _is_sharded = False
    __array_priority__ = 1000  # numpy scalars defer to our operators

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, g):
        # checked as PyTorch does: a gradient of another shape would broadcast silently in the optimizer
        if g is not None:
            if not isinstance(g, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(g).__name__}")
            if g._data.shape != self._data.shape and not (g._is_sharded or self._is_sharded):
                raise ShapeError(f"assigned grad has shape {tuple(g._data.shape)}, but the tensor has shape "
                                 f"{tuple(self._data.shape)}; a gradient must have its tensor's shape")
        self._grad = g

    # ------------------------------------------------------------------ construction
    @classmethod
    def _make(cls, arr, dev: Device, requires_grad=False, vc=None, base=None):
        """A tensor on ``arr``; ``vc``/``base``: the version counter and base of the tensor whose view ``arr``
        is (``dispatcher.call_view``), else a new counter and no base."""
        t = object.__new__(cls)
        if type(arr) not in _ARRAY_TYPES:
            if not hasattr(arr, "shape") or isinstance(arr, np.generic):
                arr = np.asarray(arr)  # Python and numpy scalars become 0-d arrays
            elif type(arr).__module__.startswith("cupy"):
                _ARRAY_TYPES.add(type(arr))  # later CuPy arrays skip the checks (a CuPy shape is built per call)
        t._data = arr
        t._device = dev
        d = _FROM_NP.get(arr.dtype)
        t._dtype = d if d is not None else _dt.from_numpy_dtype(arr.dtype)
        t.requires_grad = requires_grad
        t._grad = None
        t.grad_fn = None
        t._output_nr = 0
        t._vc = _VersionCounter() if vc is None else vc
        t._base = base
        t._accum = None
        t._post_hooks = None
        t._retains_grad = False
        return t

    def __init__(self, *a, **k):
        raise TypeError("construct tensors with vt.tensor(data), vt.zeros(...), vt.from_numpy(...) etc.")

    # ------------------------------------------------------------------ metadata
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[self._wrap_dim(dim)]

    def _wrap_dim(self, dim):
        n = self._data.ndim
        if not -max(n, 1) <= dim < max(n, 1):
            raise IndexError(f"dimension {dim} out of range for a {n}-d tensor of shape {tuple(self.shape)} "
                             f"(expected {-max(n, 1)}..{max(n, 1) - 1})")
        return dim % max(n, 1)

    def stride(self, dim=None):
        isz = self._data.itemsize
        s = tuple(x // isz for x in self._data.strides)
        return s if dim is None else s[self._wrap_dim(dim)]

    def storage_offset(self):
        if self._base is None:
            return 0
        base = self._base._data
        p = self._data.data.ptr if _be.is_cuda_array(self._data) else self._data.__array_interface__["data"][0]
        b = base.data.ptr if _be.is_cuda_array(base) else base.__array_interface__["data"][0]
        return (p - b) // self._data.itemsize

    def data_ptr(self):
        if _be.is_cuda_array(self._data):
            return self._data.data.ptr
        return self._data.__array_interface__["data"][0]

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    @property
    def nbytes(self):
        return int(self._data.nbytes)

    @property
    def dtype(self):
        return self._dtype

    @property
    def device(self):
        return self._device

    @property
    def is_cuda(self):
        return self._device.type == "cuda"

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def is_sharded(self):
        return self._is_sharded

    def is_floating_point(self):
        return self._dtype.is_floating_point

    def is_contiguous(self):
        return bool(self._data.flags.c_contiguous)

    @property
    def _version(self):
        return self._vc.v

    @property
    def data(self):
        return self.detach()

    @data.setter
    def data(self, other):
        if not isinstance(other, Tensor):
            raise TypeError("t.data = x expects a Tensor")
        self._data = other._data
        self._dtype = other._dtype
        self._device = other._device

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __hash__(self):
        return id(self)

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of a tensor with {self.numel()} elements is ambiguous; "
                               f"use .any() or .all()")
        return bool(self.item())

    def __int__(self):
        return int(self.item())

    def __float__(self):
        return float(self.item())

    def __index__(self):
        if self._dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    # ------------------------------------------------------------------ conversion
    def item(self):
        if _be._pending or _be._inflight:
            _be.flush_checks()
        if self.numel() != 1:
            raise ValueError(f"item(): a tensor with {self.numel()} elements cannot be converted to a Python "
                             f"number; only one-element tensors can")
        v = self._data.reshape(()).item() if not _be.is_cuda_array(self._data) else self._data.reshape(()).get().item()
        if self._dtype is _dt.bfloat16:
            return float(v)
        return v

    def tolist(self):
        a = self.numpy(force=True)  # as PyTorch: a list is a copy, grad or not
        if self._dtype in (_dt.bfloat16, _dt.float16):
            a = a.astype(np.float32)
        return a.tolist()

    def numpy(self, *, force=False):
        if _be._pending or _be._inflight:
            _be.flush_checks()
        if self.requires_grad and not force:
            raise RuntimeError("can't call numpy() on a tensor that requires grad; use t.detach().numpy()")
        if self._is_sharded:
            return self.full_tensor().numpy(force=force)
        return _be.to_numpy(self._data)

    def __array__(self, dtype=None, copy=None):
        a = _be.to_numpy(self._data)
        return a if dtype is None else a.astype(dtype)

    def to(self, *args, **kwargs):
        """``t.to(device)``, ``t.to(dtype)``, ``t.to(device, dtype)``, ``t.to(other)``, ``copy=``."""
        dev, dt = None, None
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, Tensor):
                dev, dt = a._device, a._dtype
            elif isinstance(a, _dt.dtype) or (a in (float, int, bool)) or type(a).__name__ == "dtype":
                dt = _dt.as_dtype(a)
            elif a is not None:
                dev = _as_device(a)
        out = self
        if dt is not None and dt is not out._dtype:
            out = V.to_dtype(out, dt)
        if dev is not None and dev != out._device:
            out = V.to_device(out, dev)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self):
        return self.to(CPU) if self._device.type != "cpu" else self

    def cuda(self, device=None):
        idx = 0 if device is None else (device if isinstance(device, int) else _as_device(device).index)
        if idx is None and device is None:
            idx = _be.current_cuda_device()
        return self.to(Device("cuda", idx))

    def type(self, dtype=None):
        if dtype is None:
            return f"vibetensor.{self._dtype.name}"
        return self.to(_dt.as_dtype(dtype))

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def half(self):
        return self.to(_dt.float16)

    def bfloat16(self):
        return self.to(_dt.bfloat16)

    def long(self):
        return self.to(_dt.int64)

    def int(self):
        return self.to(_dt.int32)

    def bool(self):
        return self.to(_dt.bool_)

    def byte(self):
        return self.to(_dt.uint8)

    # ------------------------------------------------------------------ autograd
    def detach(self):
        t = Tensor._make(self._data, self._device)
        t._vc = self._vc
        t._base = self if self._base is None else self._base
        return t

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad=True):
        if not self.is_leaf and not requires_grad:
            raise AutogradError("requires_grad_(False) on a non-leaf tensor; use .detach() instead")
        if requires_grad and not (self._dtype.is_floating_point):
            raise AutogradError(f"only floating-point tensors can require gradients, got {self._dtype.name}")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self):
        if self.is_leaf:
            return
        if not self._retains_grad:
            self._retains_grad = True
            ref = __import__("weakref").ref(self)

            def _store(g):
                t = ref()
                if t is not None:
                    t.grad = g if t.grad is None else t.grad + g
            self.grad_fn.add_pre_hook(self._output_nr, _store, retains=True)

    @property
    def retains_grad(self):
        return self._retains_grad

    def register_hook(self, hook):
        """``hook(grad) -> grad | None`` runs when this tensor's gradient is computed."""
        if not self.requires_grad:
            raise AutogradError("cannot register a hook on a tensor that doesn't require gradient")
        from .autograd import _accumulate_node
        node = _accumulate_node(self) if self.is_leaf else self.grad_fn
        return node.add_pre_hook(self._output_nr if not self.is_leaf else 0, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor)`` runs after this leaf's ``.grad`` was accumulated (data-parallel hooks)."""
        if not self.is_leaf:
            raise AutogradError("post-accumulate-grad hooks can only be registered on leaf tensors")
        if not self.requires_grad:
            raise AutogradError("cannot register a hook on a tensor that doesn't require gradient")
        if self._post_hooks is None:
            self._post_hooks = {}
        from .autograd import RemovableHandle
        h = RemovableHandle(self._post_hooks)
        self._post_hooks[h.id] = hook
        return h

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .autograd import backward
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    # ------------------------------------------------------------------ repr
    def __repr__(self):
        if self._is_sharded:
            return f"DTensor(shape={tuple(self.shape)}, dtype={self._dtype.name}, mesh={self._mesh}, " \
                   f"placements={self._placements})"
        a = _be.to_numpy(self._data)
        if self._dtype is _dt.bfloat16:
            a = a.astype(np.float32)
        body = np.array2string(a, separator=", ", precision=4, threshold=1000, edgeitems=3,
                               prefix="tensor(")
        extra = []
        if self._device.type != "cpu" or self._device.index is not None:
            extra.append(f"device='{self._device}'")
        if self._dtype not in (_dt.float32, _dt.int64, _dt.bool_) or self.numel() == 0:
            extra.append(f"dtype={self._dtype!r}")
        if self.grad_fn is not None:
            extra.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + (", " + ", ".join(extra) if extra else "") + ")"

    __str__ = __repr__

    # ------------------------------------------------------------------ operators
    def __add__(self, o): return _call_binary(V.add, self, o)
    def __radd__(self, o): return V.add(o, self)
    def __sub__(self, o): return V.sub(self, o)
    def __rsub__(self, o): return V.sub(o, self)
    def __mul__(self, o): return _call_binary(V.mul, self, o)
    def __rmul__(self, o): return V.mul(o, self)
    def __truediv__(self, o): return V.div(self, o)
    def __rtruediv__(self, o): return V.div(o, self)
    def __floordiv__(self, o): return V.floor_divide(self, o)
    def __rfloordiv__(self, o): return V.floor_divide(o, self)
    def __mod__(self, o): return V.remainder(self, o)
    def __rmod__(self, o): return V.remainder(o, self)
    def __pow__(self, o): return V.pow(self, o)
    def __rpow__(self, o): return V.pow(o, self)
    def __matmul__(self, o): return _call_binary(V.matmul, self, o)
    def __rmatmul__(self, o): return V.matmul(o, self)
    def __neg__(self): return V.neg(self)
    def __pos__(self): return self
    def __abs__(self): return V.abs(self)
    def __invert__(self): return V.logical_not(self) if self._dtype is _dt.bool_ else V.bitwise_not(self)
    def __eq__(self, o): return False if o is None else V.eq(self, o)  # (PyTorch: t == None is False)
    def __ne__(self, o): return True if o is None else V.ne(self, o)
    def __lt__(self, o): return V.lt(self, o)
    def __le__(self, o): return V.le(self, o)
    def __gt__(self, o): return V.gt(self, o)
    def __ge__(self, o): return V.ge(self, o)
    # bitwise with promotion, as PyTorch (bool & bool is the logical and; bool & int is on the ints)
    def __and__(self, o): return V.bitwise_and(self, o)
    def __or__(self, o): return V.bitwise_or(self, o)
    def __xor__(self, o): return V.bitwise_xor(self, o)
    def __rand__(self, o): return V.bitwise_and(o, self)
    def __ror__(self, o): return V.bitwise_or(o, self)
    def __rxor__(self, o): return V.bitwise_xor(o, self)
    def __lshift__(self, o): return V.bitwise_left_shift(self, o)
    def __rshift__(self, o): return V.bitwise_right_shift(self, o)
    def __rlshift__(self, o): return V.bitwise_left_shift(o, self)
    def __rrshift__(self, o): return V.bitwise_right_shift(o, self)

    def __iadd__(self, o): return self.add_(o)
    def __isub__(self, o): return self.sub_(o)
    def __imul__(self, o): return self.mul_(o)
    def __itruediv__(self, o): return self.div_(o)

    def __getitem__(self, index):
        return V.getitem(self, _index_arg(index))

    def __setitem__(self, index, value):
        from .inplace import setitem
        setitem(self, _index_arg(index), value)

    # ------------------------------------------------------------------ shape methods (varargs shapes)
    def view(self, *shape):
        if len(shape) == 1 and (isinstance(shape[0], _dt.dtype) or type(shape[0]).__name__ == "dtype"):
            raise NotImplementedError("Tensor.view(dtype) (bit reinterpretation) is not supported; use .to(dtype)")
        return _call_view(V.view, self, (_shape_arg(shape),))

    # view ops go through dispatcher.call_view: a model step makes hundreds of them
    # reshape: installed by core/ops/shape.py (a contiguous tensor's reshape goes straight to its view)
    def permute(self, *dims): return _call_view(V.permute, self, (_shape_arg(dims),))
    def expand(self, *shape): return _call_view(V.expand, self, (_shape_arg(shape),))
    def transpose(self, dim0, dim1): return _call_view(V.transpose, self, (dim0, dim1))
    def unsqueeze(self, dim): return _call_view(V.unsqueeze, self, (dim,))
    def repeat(self, *sizes): return V.repeat(self, _shape_arg(sizes))
    def tile(self, *sizes): return V.tile(self, _shape_arg(sizes))
    def view_as(self, other): return _call_view(V.view, self, (tuple(other.shape),))
    def reshape_as(self, other): return V.reshape(self, tuple(other.shape))
    def expand_as(self, other): return _call_view(V.expand, self, (tuple(other.shape),))
    def new_zeros(self, *shape, dtype=None, device=None):
        from . import factories as F
        return F.zeros(_shape_arg(shape), dtype=dtype or self._dtype, device=device or self._device)
    def new_ones(self, *shape, dtype=None, device=None):
        from . import factories as F
        return F.ones(_shape_arg(shape), dtype=dtype or self._dtype, device=device or self._device)
    def new_full(self, shape, fill_value, dtype=None, device=None):
        from . import factories as F
        return F.full(_shape_arg((shape,)), fill_value, dtype=dtype or self._dtype, device=device or self._device)
    def new_empty(self, *shape, dtype=None, device=None):
        from . import factories as F
        return F.empty(_shape_arg(shape), dtype=dtype or self._dtype, device=device or self._device)
    def new_tensor(self, data, dtype=None, device=None):
        from . import factories as F
        return F.tensor(data, dtype=dtype or self._dtype, device=device or self._device)

    @property
    def T(self):
        return _call_view(V.permute, self, (tuple(range(self.ndim - 1, -1, -1)),))

    @property
    def mT(self):
        return _call_view(V.transpose, self, (-2, -1))

    def clone(self, memory_format=None):
        return V.clone(self)

    def contiguous(self, memory_format=None):
        return self if self._data.flags.c_contiguous else V.contiguous(self)


class Size(tuple):
    """torch.Size: a tuple with numel()."""

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self):
        return f"vibetensor.Size({list(self)})"

    def __getitem__(self, i):  # a slice of a Size is a Size (shape[1:]), as in PyTorch
        r = tuple.__getitem__(self, i)
        return Size(r) if isinstance(i, slice) else r

    def __add__(self, o):
        return Size(tuple.__add__(self, tuple(o)))


def _index_arg(index):
    return index if type(index) is tuple else (index,)


# Methods that forward to the op of the same name with self first (signatures as PyTorch's).
_FORWARD = """
add sub mul div true_divide floor_divide remainder pow neg abs exp exp2 expm1 log log2 log10 log1p sqrt rsqrt
sin cos tan asin acos atan atan2 sinh cosh tanh sigmoid relu gelu silu softplus sign floor ceil round trunc frac
reciprocal square clamp clip where maximum minimum fmod lerp addcmul addcdiv hypot logaddexp
eq ne lt le gt ge logical_and logical_or logical_xor logical_not isnan isinf isfinite isclose allclose equal
bitwise_and bitwise_or bitwise_xor bitwise_not nan_to_num erf divide isposinf isneginf
sum mean prod max min amax amin argmax argmin var std norm logsumexp cumsum cumprod all any count_nonzero
matmul mm bmm dot mv outer
softmax log_softmax
t flatten unflatten squeeze narrow split chunk unbind movedim swapaxes flip roll
gather scatter scatter_add index_select masked_fill masked_select tril triu topk sort argsort diagonal
index_add index_fill take nonzero unique
swapdims moveaxis tensor_split index_put argwhere fliplr flipud
""".split()


def _make_forward(name):
    def method(self, *args, **kwargs):
        return getattr(V, name)(self, *args, **kwargs)
    method.__name__ = name
    method.__qualname__ = f"Tensor.{name}"
    return method


for _n in _FORWARD:
    setattr(Tensor, _n, _make_forward(_n))


def _where_method(self, condition, y):
    """``x.where(cond, y)`` is ``where(cond, x, y)`` (the tensor is not the first op argument)."""
    return V.where(condition, self, y)


Tensor.where = _where_method


# In-place variants: computed by the op, then written into this tensor's storage (see inplace.py).
_INPLACE = """
add sub mul div pow clamp clip masked_fill exp log sqrt neg abs sigmoid tanh relu fill zero copy
floor ceil round trunc reciprocal scatter scatter_add index_add index_fill lerp addcmul addcdiv
tril triu normal uniform exponential random bernoulli fmod remainder sign square addmm sin cos
index_put
""".split()


_inplace_apply = None  # inplace.apply, bound when inplace.py is imported (it imports this module)


def _make_inplace(name):
    def method(self, *args, **kwargs):
        return _inplace_apply(self, name, args, kwargs)
    method.__name__ = name + "_"
    method.__qualname__ = f"Tensor.{name}_"
    return method


for _n in _INPLACE:
    setattr(Tensor, _n + "_", _make_inplace(_n))

_disp._Tensor = Tensor


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)
