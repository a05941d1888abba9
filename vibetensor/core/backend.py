"""The one place that knows numpy vs CuPy.

A device maps to an array module (numpy for CPU and virtual CPU devices, CuPy for CUDA), a
current-device context and a stream. Nothing above this module imports cupy directly; it asks here.
CuPy is optional: without it every CPU path works and CUDA requests raise DeviceUnavailableError
saying how to install the GPU extra.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..errors import DeviceUnavailableError

_cupy = None
_cupy_error: str | None = None
_probed = False
_single_cuda = False  # exactly one visible GPU: every CUDA op runs on the current device, no guard needed
_NULL_GUARD = contextlib.nullcontext()
_cast = _cast_many = None  # vibetensor.cuda.kernels' casts, set once CuPy is found

INSTALL_HINT = ("install the GPU extra: pip install 'vibetensor[cuda13]' (CUDA 13) or "
                "'vibetensor[cuda12]' (CUDA 12), on a machine with an NVIDIA GPU and driver")


def _probe():
    global _cupy, _cupy_error, _probed
    if _probed:
        return _cupy
    _probed = True
    try:
        import cupy  # noqa: PLC0415 - optional dependency, imported lazily
    except Exception as e:  # ImportError, or a broken CUDA install
        _cupy_error = f"CuPy is not importable ({type(e).__name__}: {e})"
        return None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        _cupy_error = f"CuPy is installed but the CUDA driver/runtime failed ({e})"
        return None
    if n == 0:
        _cupy_error = "CuPy is installed but no CUDA device is visible"
        return None
    global _single_cuda
    _single_cuda = n == 1
    global _cast, _cast_many
    from ..cuda.kernels import cast as _cast, cast_many as _cast_many  # astype's CUDA path (no import per call)
    _cupy = cupy
    from ..cuda import memory as _mem  # observed caching allocator (peak, OOM ladder, events)
    _mem.install()
    from ..backends import cuda as _bc  # TF32 off unless asked for (PyTorch's default)
    _bc.apply()
    from .. import _env
    if _env.flags().fused_kernels:
        from ..cuda import fused as _fused  # fused CUDA kernels for softmax, norms, losses, attention, GELU
        _fused.register()
    return cupy


def cuda_available() -> bool:
    return _probe() is not None


def cupy_module():
    """The cupy module, or a clear DeviceUnavailableError."""
    cp = _probe()
    if cp is None:
        raise DeviceUnavailableError(f"CUDA is not available: {_cupy_error}; {INSTALL_HINT}")
    return cp


def cuda_device_count() -> int:
    cp = _probe()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def current_cuda_device() -> int:
    return cupy_module().cuda.runtime.getDevice()


def xp_for(dev):
    """Array module for a Device."""
    if dev.type == "cpu":
        return np
    cp = cupy_module()
    n = cp.cuda.runtime.getDeviceCount()
    if dev.index is not None and dev.index >= n:
        raise DeviceUnavailableError(f"device 'cuda:{dev.index}' does not exist: {n} CUDA device(s) visible "
                                     f"(cuda:0..cuda:{n - 1})")
    return cp


def xp_of(arr):
    """Array module of an array (numpy or cupy) -- cheap: checks the type's module."""
    if type(arr) is np.ndarray or isinstance(arr, np.generic):
        return np
    if _cupy is not None and isinstance(arr, _cupy.ndarray):
        return _cupy
    return np


def is_cuda_array(arr) -> bool:
    return _cupy is not None and isinstance(arr, _cupy.ndarray)


def astype(arr, np_dtype):
    """``arr.astype(np_dtype)`` (a new array); float32 <-> float16/bfloat16 on CUDA by our vectorised cast
    kernel (CuPy's runs at about half the memory bound)."""
    if _cupy is not None and isinstance(arr, _cupy.ndarray):
        return _cast(arr, np_dtype)
    return arr.astype(np_dtype)


def astype_many(arrs, np_dtype):
    """``[astype(a, np_dtype) for a in arrs]``; on CUDA up to three float32 -> half casts share one launch."""
    if _cupy is not None and len(arrs) > 1 and isinstance(arrs[0], _cupy.ndarray):
        return _cast_many(arrs, np_dtype)
    return [astype(a, np_dtype) for a in arrs]


def device_guard(dev):
    """Context manager making ``dev`` current for CuPy work (a no-op for CPU, for the current device, and
    on a one-GPU machine, where that is the only device: no runtime call on the per-op path)."""
    if dev.type != "cuda" or _single_cuda:
        return _NULL_GUARD
    cp = cupy_module()
    if cp.cuda.runtime.getDevice() == dev.index:
        return _NULL_GUARD
    return cp.cuda.Device(dev.index)


def to_numpy(arr) -> np.ndarray:
    if is_cuda_array(arr):
        return arr.get()
    return np.asarray(arr)


def asarray_on(data, dev, np_dtype=None):
    """Put host/device data on ``dev`` as a backend array (copying only when needed)."""
    if dev.type == "cpu":
        if is_cuda_array(data):
            data = data.get()
        return np.asarray(data, dtype=np_dtype)
    cp = cupy_module()
    xp_for(dev)
    with device_guard(dev):
        if is_cuda_array(data) and data.device.id != dev.index:
            out = cp.empty(data.shape, dtype=data.dtype)
            out.data.copy_from_device(data.data, data.nbytes) if data.flags.c_contiguous else out.set(data.get())
            data = out
        return cp.asarray(data, dtype=np_dtype)


_cuda_dtype_ok: set = set()


def check_cuda_dtype(vt_dtype, opname: str = "this op"):
    """CuPy lacks some dtypes (bfloat16 before CuPy 14): raise a clear error instead of wrong numbers.
    Probed once per dtype (an allocation per call would cost every cast a CuPy call)."""
    if vt_dtype in _cuda_dtype_ok:
        return
    cp = cupy_module()
    try:
        cp.empty((1,), dtype=vt_dtype.np)
        _cuda_dtype_ok.add(vt_dtype)
    except Exception as e:
        raise TypeError(f"{opname}: dtype {vt_dtype.name} is not supported on CUDA by the installed CuPy "
                        f"{cp.__version__} ({e}); use float16/float32 on CUDA or bfloat16 on CPU") from None


def matmul(a, b):
    """``a @ b`` on backend arrays. CUDA float matmuls go through our own cuBLAS handle
    (vibetensor.cuda.blas) so they can be captured in CUDA graphs; everything else uses xp.matmul."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        from ..cuda import blas
        if blas.supported(a, b):
            return blas.matmul(a, b)
        return _cupy.matmul(a, b)
    return np.matmul(a, b)


# --------------------------------------------------------------------------------------------------
# Deferred input checks on CUDA. Validating indices on the host would stall the host on every op
# (a device sync), killing CPU/GPU overlap. As PyTorch's device-side asserts do, a CUDA op records a
# device flag instead; flags are checked at the next point where the host syncs anyway (item(),
# numpy(), tolist(), vt.cuda.synchronize()) and raise the op's clear error there. CPU checks stay
# immediate. Inside CUDA-graph capture no check is recorded.

_pending: list = []   # checks recorded since the last batch: (flag or indices, lo, hi, describe)
_inflight: list = []  # batches on their way to pinned host memory: (event, host flags, items, device flags)
_BATCH = 64


def check_index_range(opname, idx, lo, hi, describe):
    """Raise (CPU) or defer (CUDA) an IndexError when some idx is outside [lo, hi)."""
    if idx.size == 0:
        return
    if not is_cuda_array(idx):
        bad = (idx < lo) | (idx >= hi)
        if bad.any():
            raise IndexError(describe(int(idx.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])))
        return
    from ..cuda.graphs import is_current_stream_capturing
    if is_current_stream_capturing():
        return
    _defer((idx, lo, hi, describe))


def defer_flag(flag, message):
    """CUDA: remember a 0-d bool device array; raise IndexError(message()) at the next flush if True."""
    from ..cuda.graphs import is_current_stream_capturing
    if is_current_stream_capturing():
        return
    _defer((flag, None, None, message))


def _defer(item):
    if _pending and item[0].device.id != _pending[0][0].device.id:
        _send_batch()  # a batch holds one device's flags (they are stacked on it)
    _pending.append(item)
    if len(_pending) >= _BATCH:
        _send_batch()


def _flags(items):
    return _cupy.stack([((idx < lo) | (idx >= hi)).any() if lo is not None else idx for idx, lo, hi, _ in items])


def _send_batch():
    """A loop that never syncs must not pile up flags (and what their messages hold), nor stall: the pending
    flags go to pinned host memory by one asynchronous copy, read once its event has completed (a later
    check or the next flush raises the first bad one)."""
    import cupyx
    items = list(_pending)
    _pending.clear()
    cp = _cupy
    with cp.cuda.Device(items[0][0].device.id):
        dev = _flags(items)
        host = cupyx.empty_pinned(dev.shape, dtype=dev.dtype)
        dev.get(out=host, blocking=False)
        ev = cp.cuda.Event(disable_timing=True)
        ev.record()
    _inflight.append((ev, host, items, dev))  # dev stays alive until its copy completed
    _poll(block=len(_inflight) > 8)  # the device far behind: wait for the oldest batches rather than pile up


def _poll(block):
    """Check the batches whose copies completed, oldest first; ``block``: wait for all of them."""
    while _inflight:
        ev, host, items, _ = _inflight[0]
        if not block and not ev.done:
            return
        ev.synchronize()
        _inflight.pop(0)
        _raise_first(items, host)


def _raise_first(items, bad):
    for (idx, lo, hi, describe), b in zip(items, bad):
        if b:
            _pending.clear()  # the error is raised once; later checks of the failed step go with it
            _inflight.clear()
            if lo is None:
                raise IndexError(describe())
            flat = idx.reshape(-1)
            v = int(flat[_cupy.flatnonzero((flat < lo) | (flat >= hi))[0]].get())
            raise IndexError(describe(v))


def flush_checks():
    """Raise the first failed deferred check, oldest first (the host syncs here)."""
    _poll(block=True)
    if _pending:
        items = list(_pending)
        _pending.clear()
        with _cupy.cuda.Device(items[0][0].device.id):
            bad = _flags(items).get()
        _raise_first(items, bad)
