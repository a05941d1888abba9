"""Tensor factories: tensor, zeros, ones, full, empty, arange, linspace, eye, rand*, *_like, from_numpy."""
from __future__ import annotations

import math

import numpy as np

from . import backend as _be
from . import dtype as _dt
from .device import CPU, device as _as_device
from .random import gen_for
from .tensor import Tensor, _shape_arg


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
    """torch.tensor's inference: bool -> bool, int -> int64, float -> default float."""
    if isinstance(data, bool):
        return _dt.bool_
    if isinstance(data, int):
        return _dt.int64
    if isinstance(data, float):
        return _dt.get_default_dtype()
    a = np.asarray(data)
    if a.dtype == np.float64 and not isinstance(data, np.ndarray):
        return _dt.get_default_dtype()
    if a.dtype.kind in "iu" and not isinstance(data, np.ndarray):
        return _dt.int64
    if a.dtype == object or a.dtype.kind in "US":
        raise TypeError(f"vt.tensor: cannot build a tensor from data of type {type(data).__name__} "
                        f"(numpy saw dtype {a.dtype}); pass numbers, nested lists of numbers or arrays")
    return _dt.from_numpy_dtype(a.dtype)


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        return data.detach().numpy()
    if isinstance(data, (list, tuple)) and data and any(isinstance(x, (Tensor, list, tuple)) for x in data):
        return [_unwrap_nested(x) for x in data]
    if isinstance(data, (list, tuple)):
        return [x.item() if isinstance(x, Tensor) else x for x in data]
    return data


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
    dt = _infer_dtype(data) if dtype is None else _dt.as_dtype(dtype)
    arr = np.array(data, dtype=dt.np)
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


def _filled(shape, value, dtype, device, requires_grad, kind):
    shape = _shape_arg(shape)
    for s in shape:
        if s < 0:
            raise ValueError(f"{kind}: negative dimension in shape {shape}")
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else (
        _dt.get_default_dtype() if not isinstance(value, (bool, int)) or value is None else _infer_dtype(value))
    xp = _be.xp_for(dev)
    if dev.type == "cuda":
        _be.check_cuda_dtype(dt, kind)
        with _be.device_guard(dev):
            if value is None:
                arr = xp.empty(shape, dtype=dt.np)
            elif value == 0:
                arr = xp.zeros(shape, dtype=dt.np)
            else:
                arr = xp.full(shape, value, dtype=dt.np)
        return _finish(arr, dev, requires_grad)
    if value is None:
        arr = np.empty(shape, dtype=dt.np)
    elif value == 0:
        arr = np.zeros(shape, dtype=dt.np)
    else:
        arr = np.full(shape, value, dtype=dt.np)
    return _finish(arr, dev, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 0, dtype or _dt.get_default_dtype(), device, requires_grad, "zeros")


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 1, dtype or _dt.get_default_dtype(), device, requires_grad, "ones")


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, None, dtype or _dt.get_default_dtype(), device, requires_grad, "empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    return _filled((size,) if isinstance(size, int) else size, fill_value, dtype, device, requires_grad, "full")


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    if t._is_sharded and device is None:  # a DTensor: shards of the same layout (vibetensor.fabric)
        return t._like("zeros", dtype=dtype, requires_grad=requires_grad)
    return zeros(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    if t._is_sharded and device is None:  # a DTensor: shards of the same layout (vibetensor.fabric)
        return t._like("ones", dtype=dtype, requires_grad=requires_grad)
    return ones(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    if t._is_sharded and device is None:  # a DTensor: shards of the same layout (vibetensor.fabric)
        return t._like("empty", dtype=dtype, requires_grad=requires_grad)
    return empty(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
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
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        dtype = _dt.int64 if all(isinstance(v, int) for v in (start, end, step)) else _dt.get_default_dtype()
    dt = _dt.as_dtype(dtype)
    n = max(0, math.ceil((end - start) / step))
    dev = _dev(device)
    xp, guard = _on(dev)
    with guard:
        if dt.is_floating_point:
            arr = (start + xp.arange(n, dtype=np.float64) * step).astype(dt.np)
        else:
            arr = xp.arange(start, start + n * step, step, dtype=np.int64)[:n].astype(dt.np, copy=False)
    return _finish(arr, dev, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}")
    dt = _dt.as_dtype(dtype)
    dev = _dev(device)
    xp, guard = _on(dev)
    with guard:
        arr = xp.linspace(start, end, steps, dtype=np.float64).astype(dt.np)
    return _finish(arr, dev, requires_grad)


def logspace(start, end, steps, base=10.0, dtype=None, device=None):
    dt = _dt.as_dtype(dtype)
    return _finish(np.logspace(start, end, steps, base=base).astype(dt.np), _dev(device), False)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    dt = _dt.as_dtype(dtype)
    dev = _dev(device)
    xp, guard = _on(dev)
    with guard:
        arr = xp.eye(n, m, dtype=dt.np)
    return _finish(arr, dev, requires_grad)


def _rand_common(shape, dtype, device, generator, kind):
    shape = _shape_arg(shape)
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.get_default_dtype()
    if not dt.is_floating_point:
        raise TypeError(f"{kind}: dtype must be floating, got {dt.name}; use vt.randint for integers")
    if dev.type == "cuda":
        _be.check_cuda_dtype(dt, kind)
    return shape, dev, dt, gen_for(generator, dev)


def rand(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    shape, dev, dt, g = _rand_common(shape, dtype, device, generator, "rand")
    return _finish(g.random(shape, dt.np), dev, requires_grad)


def randn(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    shape, dev, dt, g = _rand_common(shape, dtype, device, generator, "randn")
    return _finish(g.normal(shape, dt.np), dev, requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None):
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size is required, e.g. vt.randint(0, 10, (3, 4))")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    g = gen_for(generator, dev)
    return _finish(g.integers(low, high, _shape_arg((size,)), dt.np), dev, False)


def randperm(n, *, generator=None, dtype=None, device=None):
    dev = _dev(device)
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    g = gen_for(generator, dev)
    return _finish(g.permutation(n).astype(dt.np), dev, False)


def rand_like(t, dtype=None, device=None, generator=None):
    if t._is_sharded and device is None:
        return t._like("rand", dtype=dtype, generator=generator)
    return rand(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, generator=generator)


def randn_like(t, dtype=None, device=None, generator=None):
    if t._is_sharded and device is None:
        return t._like("randn", dtype=dtype, generator=generator)
    return randn(tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device, generator=generator)


def randint_like(t, low, high=None, dtype=None, device=None):
    return randint(low, high, tuple(t.shape), dtype=dtype or t.dtype, device=device or t.device)
