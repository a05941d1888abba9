"""Tensor factories: tensor, zeros, ones, full, empty, arange, linspace, eye, rand*, *_like, from_numpy."""
from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from . import backend as _be
from . import dtype as _dt
from .device import CPU, device as _as_device
from .random import gen_for
from .size_args import _shape_arg, _short_repr, _size_int
from .tensor import Tensor
from ..errors import DTypeError, ShapeError

_NUM = (int, float)
# the values each integer dtype holds (randint's bounds, randperm's n); floating dtypes draw through int64
_INT_RANGE = {d: (int(np.iinfo(d.np).min), int(np.iinfo(d.np).max)) for d in _dt.ALL
              if d is not _dt.bool_ and not d.is_floating_point}
_INT_RANGE[_dt.bool_] = (0, 1)
# randperm's largest n per floating dtype: 0..n-1 must all be exact (PyTorch's limits: 2**(mantissa+1) + 1)
_PERM_FLOAT_MAX = {_dt.float16: 2 ** 11 + 1, _dt.bfloat16: 2 ** 8 + 1, _dt.float32: 2 ** 24 + 1,
                   _dt.float64: 2 ** 53 + 1}


def _int_arg(v, kind, arg):
    """An integer argument that is not a plain int (randint's bounds, randperm's n, eye's n/m, linspace's
    steps): what ``__index__`` takes, as PyTorch; a float, bool or string is a TypeError, not truncated."""
    n = _size_int(v)
    if n is None:
        raise TypeError(f"{kind}(): {arg} must be an int, got {_short_repr(v)} ({type(v).__name__})")
    return n


def _num_arg(v, kind, arg):
    """A real-number argument that is not a plain int/float: numpy scalars and one-element tensors."""
    if isinstance(v, Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    raise TypeError(f"{kind}(): {arg} must be a real number, got {_short_repr(v)} ({type(v).__name__})")


def _not_tensor(t, kind):
    return TypeError(f"{kind}(): input must be a vt.Tensor, got {_short_repr(t)} ({type(t).__name__}); "
                     f"wrap data with vt.tensor(data) first, or call vt.{kind[:-5]}(...) with a shape")


def _negative_size(shape, kind):
    raise ShapeError(f"{kind}(): negative dimension in size {tuple(shape)}; sizes must be >= 0")


def _alloc_failed(e, shape, dt, dev, kind):
    """Reword a failed allocation (numpy's 'array is too big' / 'Maximum allowed dimension exceeded', a
    MemoryError) to name the shape and the bytes; return (the caller re-raises ``e``) for any other error."""
    nbytes = math.prod(shape) * dt.itemsize
    if isinstance(e, MemoryError):
        raise MemoryError(f"{kind}(): cannot allocate {nbytes / 2 ** 30:.4g} GiB for shape {tuple(shape)} of "
                          f"{dt.name} on {dev}; use smaller sizes or free memory") from e
    if nbytes > sys.maxsize:
        raise ShapeError(f"{kind}(): shape {tuple(shape)} of {dt.name} needs {nbytes:.4g} bytes, more than an "
                         f"array can address ({sys.maxsize} bytes); check the sizes") from e


def _dev(device):
    return CPU if device is None else _as_device(device)


def _finish(arr, dev, requires_grad):
    if dev.type == "cuda":
        arr = _be.asarray_on(arr, dev)
    t = Tensor._make(arr, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data):
    """torch.tensor's inference: bool -> bool, int -> int64, float -> default float; numpy scalars keep theirs."""
    if isinstance(data, np.generic):  # (before the float test: np.float64 is a float subclass)
        return _dt.from_numpy_dtype(data.dtype)
    if isinstance(data, bool):
        return _dt.bool_
    if isinstance(data, int):
        return _dt.int64
    if isinstance(data, float):
        return _dt.get_default_dtype()
    a = np.asarray(data)
    if not isinstance(data, np.ndarray) and a.dtype.kind in "iuf" and _has_numpy_leaf(data):
        return _leaf_dtype(data)  # [np.int32(1)] is int32, [np.int64(1), 2.5] the default float
    if a.dtype == np.float64 and not isinstance(data, np.ndarray):
        return _dt.get_default_dtype()
    if a.dtype.kind in "iu" and not isinstance(data, np.ndarray):
        return _dt.int64
    if a.dtype == object or a.dtype.kind in "US":
        raise TypeError(f"vt.tensor: cannot build a tensor from data of type {type(data).__name__} "
                        f"(numpy saw dtype {a.dtype}); pass numbers, nested lists of numbers or arrays")
    return _dt.from_numpy_dtype(a.dtype)


def _has_numpy_leaf(data):
    while isinstance(data, (list, tuple)) and data:
        data = data[0]  # (checked on the first leaf: lists of Python numbers keep the fast path)
    return isinstance(data, (np.generic, np.ndarray))


def _leaf_dtype(data):
    """torch.tensor's per-element inference, promoted: numpy leaves keep their dtype, Python ints are
    int64, floats the default float."""
    kinds, stack = set(), [data]
    while stack:
        x = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, (np.generic, np.ndarray)):
            kinds.add(_dt.from_numpy_dtype(x.dtype))
        else:
            kinds.add(_infer_dtype(x))
    out = kinds.pop()
    for d in kinds:
        out = _dt.promote_types(out, d)
    return out


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        return data.detach().numpy()
    if isinstance(data, (list, tuple)) and data and any(isinstance(x, (Tensor, list, tuple)) for x in data):
        return [_unwrap_nested(x) for x in data]
    if isinstance(data, (list, tuple)):
        return [x.item() if isinstance(x, Tensor) else x for x in data]
    return data


def _is_seq(x):
    return isinstance(x, (list, tuple)) or (isinstance(x, np.ndarray) and x.ndim > 0)


def _ragged(data):
    """Where the nested sequences in ``data`` stop being rectangular, in PyTorch's words; None if they are.
    The expected lengths are those along the first element of each level, as PyTorch takes them."""
    shape, x = [], data
    while _is_seq(x):
        shape.append(len(x))
        if not len(x):
            break
        x = x[0]

    def walk(x, d, idx):
        at = "data" + "".join(f"[{i}]" for i in idx)
        if isinstance(x, np.ndarray) and x.ndim > 0:
            if x.shape == tuple(shape[d:]):
                return None
            if d == len(shape) or x.shape[0] != shape[d]:
                got = f"length {x.shape[0]}" if d < len(shape) else f"an array of shape {x.shape}"
                return f"expected {_expect(shape, d)} at {at} (dim {d}), got {got}"
        elif not _is_seq(x):
            return None if d == len(shape) else f"expected {_expect(shape, d)} at {at} (dim {d}), got a number"
        elif d == len(shape):
            return f"expected a number at {at} (dim {d}), got a sequence of length {len(x)}"
        elif len(x) != shape[d]:
            return f"expected {_expect(shape, d)} at {at} (dim {d}), got length {len(x)}"
        for i, y in enumerate(x):
            r = walk(y, d + 1, idx + (i,))
            if r:
                return r
        return None

    return walk(data, 0, ())


def _expect(shape, d):
    return f"a sequence of length {shape[d]}" if d < len(shape) else "a number"


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (numbers, nested lists, numpy/CuPy arrays, tensors)."""
    if isinstance(data, Tensor):
        dtype = data.dtype if dtype is None else _dt.as_dtype(dtype)
        device = data.device if device is None else device
        data = data.detach()
        out = data.to(device=_dev(device), dtype=dtype, copy=True)
        if requires_grad:
            out.requires_grad_(True)
        return out
    dev = _dev(device)
    if _be.is_cuda_array(data):
        dt = _dt.from_numpy_dtype(data.dtype) if dtype is None else _dt.as_dtype(dtype)
        arr = _be.asarray_on(data, dev, dt.np)
        if dev.type == "cuda":
            arr = arr.copy()
        return _finish(arr, dev, requires_grad)
    data = _unwrap_nested(data)
    try:
        dt = _infer_dtype(data) if dtype is None else _dt.as_dtype(dtype)
        arr = np.array(data, dtype=dt.np)
    except ValueError:  # numpy's "inhomogeneous shape": say where the lengths differ
        where = _ragged(data)
        if where is None:
            raise
        raise ShapeError(f"vt.tensor: nested sequences have unequal lengths: {where}; give every row the same "
                         f"length (pad the short ones)") from None
    return _finish(arr, dev, requires_grad)


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor) and (dtype is None or _dt.as_dtype(dtype) is data.dtype) and \
            (device is None or _as_device(device) == data.device):
        return data
    if isinstance(data, np.ndarray) and device is None and dtype is None:
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(arr: np.ndarray) -> Tensor:
    """Zero-copy: the tensor shares ``arr``'s memory."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(arr).__name__}")
    _dt.from_numpy_dtype(arr.dtype)
    return Tensor._make(arr, CPU)


def _alloc(xp, shape, value, npdt):
    if value is None:
        return xp.empty(shape, dtype=npdt)
    if value == 0:
        return xp.zeros(shape, dtype=npdt)
    return xp.full(shape, value, dtype=npdt)


def _filled(shape, value, dtype, device, requires_grad, kind):
    shape = _shape_arg(shape, kind)
    for s in shape:
        if s < 0:
            _negative_size(shape, kind)
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else (
        _dt.get_default_dtype() if not isinstance(value, (bool, int)) or value is None else _infer_dtype(value))
    try:
        if dev.type == "cuda":
            _be.check_cuda_dtype(dt, kind)
            with _be.device_guard(dev):
                arr = _alloc(_be.xp_for(dev), shape, value, dt.np)
        else:
            arr = _alloc(np, shape, value, dt.np)
    except (ValueError, OverflowError, MemoryError) as e:
        _alloc_failed(e, shape, dt, dev, kind)
        raise
    return _finish(arr, dev, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 0, dtype or _dt.get_default_dtype(), device, requires_grad, "zeros")


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 1, dtype or _dt.get_default_dtype(), device, requires_grad, "ones")


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, None, dtype or _dt.get_default_dtype(), device, requires_grad, "empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if type(fill_value) not in _NUM and type(fill_value) is not bool:
        if isinstance(fill_value, Tensor) and fill_value.numel() == 1:
            fill_value = fill_value.item()
        elif not isinstance(fill_value, (numbers.Real, np.bool_)):  # None would give np.empty's garbage
            raise TypeError(f"full(): fill_value must be a real number or bool, got {_short_repr(fill_value)} "
                            f"({type(fill_value).__name__})")
    # (size,): _shape_arg unpacks a tuple/list and keeps an int (a vt extension: PyTorch wants a tuple)
    return _filled((size,), fill_value, dtype, device, requires_grad, "full")


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "zeros_like")
    if t._is_sharded and device is None:  # a DTensor: shards of the same layout (vibetensor.fabric)
        return t._like("zeros", dtype=dtype, requires_grad=requires_grad)
    return zeros(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "ones_like")
    if t._is_sharded and device is None:  # a DTensor: shards of the same layout (vibetensor.fabric)
        return t._like("ones", dtype=dtype, requires_grad=requires_grad)
    return ones(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "empty_like")
    if t._is_sharded and device is None:  # a DTensor: shards of the same layout (vibetensor.fabric)
        return t._like("empty", dtype=dtype, requires_grad=requires_grad)
    return empty(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "full_like")
    if t._is_sharded and device is None:
        return t._like("full", fill_value, dtype=dtype, requires_grad=requires_grad)
    return full(tuple(t.shape), fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def _on(dev):
    """(array module, device guard) to build directly on ``dev``: no host-to-device copy, so
    factories also work inside CUDA-graph capture."""
    return _be.xp_for(dev), _be.device_guard(dev)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if type(start) not in _NUM or type(end) not in _NUM or type(step) not in _NUM:
        start, end, step = (_num_arg(v, "arange", a) for v, a in ((start, "start"), (end, "end"), (step, "step")))
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if (step > 0 and end < start) or (step < 0 and end > start):  # PyTorch raises where numpy gives empty
        raise ValueError(f"arange(): upper bound and lower bound inconsistent with step sign: start={start}, "
                         f"end={end}, step={step}; use a {'negative' if step > 0 else 'positive'} step")
    if dtype is None:
        dtype = _dt.int64 if all(isinstance(v, int) for v in (start, end, step)) else _dt.get_default_dtype()
    dt = _dt.as_dtype(dtype)
    try:
        n = max(0, math.ceil((end - start) / step))
    except (OverflowError, ValueError):  # inf or nan
        raise ValueError(f"arange(): unsupported range: {start} -> {end} (step {step}); the bounds must be "
                         f"finite") from None
    dev = _dev(device)
    xp, guard = _on(dev)
    try:
        with guard:
            if dt.is_floating_point:
                arr = (start + xp.arange(n, dtype=np.float64) * step).astype(dt.np)
            else:
                arr = xp.arange(start, start + n * step, step, dtype=np.int64)[:n].astype(dt.np, copy=False)
    except (ValueError, OverflowError, MemoryError) as e:
        _alloc_failed(e, (n,), dt, dev, "arange")
        raise
    return _finish(arr, dev, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    if type(steps) is not int:
        steps = _int_arg(steps, "linspace", "steps")
    if type(start) not in _NUM or type(end) not in _NUM:
        start, end = _num_arg(start, "linspace", "start"), _num_arg(end, "linspace", "end")
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}")
    dt = _dt.as_dtype(dtype)
    dev = _dev(device)
    xp, guard = _on(dev)
    with guard:
        arr = xp.linspace(start, end, steps, dtype=np.float64).astype(dt.np)
    return _finish(arr, dev, requires_grad)


def logspace(start, end, steps, base=10.0, dtype=None, device=None):
    if type(steps) is not int:
        steps = _int_arg(steps, "logspace", "steps")
    if steps < 0:
        raise ValueError(f"logspace: number of steps must be non-negative, got {steps}")
    dt = _dt.as_dtype(dtype)
    return _finish(np.logspace(start, end, steps, base=base).astype(dt.np), _dev(device), False)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    if type(n) is not int:
        n = _int_arg(n, "eye", "n")
    if m is not None and type(m) is not int:
        m = _int_arg(m, "eye", "m")
    if n < 0 or (m is not None and m < 0):
        raise ValueError(f"eye(): n and m must be greater or equal to 0, got n={n}, m={m}")
    dt = _dt.as_dtype(dtype)
    dev = _dev(device)
    xp, guard = _on(dev)
    try:
        with guard:
            arr = xp.eye(n, m, dtype=dt.np)
    except (ValueError, OverflowError, MemoryError) as e:
        _alloc_failed(e, (n, n if m is None else m), dt, dev, "eye")
        raise
    return _finish(arr, dev, requires_grad)


def _rand_common(shape, dtype, device, generator, kind):
    shape = _shape_arg(shape, kind)
    for s in shape:
        if s < 0:
            _negative_size(shape, kind)
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
    if not dt.is_floating_point:
        raise TypeError(f"{kind}: dtype must be floating, got {dt.name}; use vt.randint for integers")
    if dev.type == "cuda":
        _be.check_cuda_dtype(dt, kind)
    return shape, dev, dt, gen_for(generator, dev)


def _sampled(kind, shape, dtype, device, generator, requires_grad):
    shape, dev, dt, g = _rand_common(shape, dtype, device, generator, kind)
    try:
        arr = g.random(shape, dt.np) if kind == "rand" else g.normal(shape, dt.np)
    except (ValueError, OverflowError, MemoryError) as e:
        _alloc_failed(e, shape, dt, dev, kind)
        raise
    return _finish(arr, dev, requires_grad)


def rand(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    return _sampled("rand", shape, dtype, device, generator, requires_grad)


def randn(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    return _sampled("randn", shape, dtype, device, generator, requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None):
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size), as PyTorch
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size is required, e.g. vt.randint(0, 10, (3, 4))")
    if type(low) is not int:
        low = _int_arg(low, "randint", "low")
    if type(high) is not int:
        high = _int_arg(high, "randint", "high")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    lo, hi = _INT_RANGE.get(dt, _INT_RANGE[_dt.int64])  # uint8/bool would wrap values, as astype does
    if low < lo or high - 1 > hi:
        raise ValueError(f"randint(): the range [{low}, {high}) does not fit {dt.name}, which holds {lo}..{hi}; "
                         f"narrow the range or use a wider dtype")
    shape = _shape_arg((size,), "randint")
    for s in shape:
        if s < 0:
            _negative_size(shape, "randint")
    g = gen_for(generator, dev)
    try:
        arr = g.integers(low, high, shape, dt.np)
    except (ValueError, OverflowError, MemoryError) as e:
        _alloc_failed(e, shape, dt, dev, "randint")
        raise
    return _finish(arr, dev, False)


def randperm(n, *, generator=None, dtype=None, device=None):
    if type(n) is not int:
        n = _int_arg(n, "randperm", "n")
    if n < 0:
        raise ValueError(f"randperm(): n must be non-negative, got {n}")
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    if dt is _dt.bool_:
        raise DTypeError("randperm(): dtype bool is not supported (as in PyTorch); use an integer dtype")
    most = _PERM_FLOAT_MAX[dt] if dt.is_floating_point else _INT_RANGE[dt][1] + 1
    if n > most:  # astype would wrap (integers) or round (floats) the values past it
        raise ValueError(f"randperm(): n={n} is too large for {dt.name}, which holds 0..n-1 exactly only up to "
                         f"n={most}; use a wider dtype such as int64")
    g = gen_for(generator, dev)
    try:
        arr = g.permutation(n)
    except (ValueError, OverflowError, MemoryError) as e:
        _alloc_failed(e, (n,), _dt.int64, dev, "randperm")
        raise
    return _finish(arr.astype(dt.np), dev, False)


def rand_like(t, dtype=None, device=None, generator=None):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "rand_like")
    if t._is_sharded and device is None:
        return t._like("rand", dtype=dtype, generator=generator)
    return rand(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, generator=generator)


def randn_like(t, dtype=None, device=None, generator=None):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "randn_like")
    if t._is_sharded and device is None:
        return t._like("randn", dtype=dtype, generator=generator)
    return randn(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, generator=generator)


def randint_like(t, low, high=None, dtype=None, device=None):
    if not isinstance(t, Tensor):
        raise _not_tensor(t, "randint_like")
    return randint(low, high, tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device)
