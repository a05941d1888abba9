"""DLPack interop: zero-copy exchange with numpy, CuPy and PyTorch on CPU and CUDA."""
from __future__ import annotations

import numpy as np

from . import backend as _be
from .device import CPU, Device
from .tensor import Tensor

_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST = 1, 2, 3


def to_dlpack(t: Tensor):
    """A DLPack capsule sharing ``t``'s memory (consumed once by a from_dlpack)."""
    return t.__dlpack__()


def _tensor_dlpack(self, stream=None, **kwargs):
    if self._is_sharded:
        raise TypeError("__dlpack__ of a sharded tensor: call .to_local() or .full_tensor() first")
    if self.requires_grad:
        raise RuntimeError("can't export a tensor that requires grad through DLPack; use t.detach()")
    if self._dtype.name == "bfloat16" and not _be.is_cuda_array(self._data):
        raise TypeError("DLPack export of a CPU bfloat16 tensor is not supported (numpy cannot express "
                        "bfloat16 in DLPack); convert with .float() first")
    if _be.is_cuda_array(self._data):
        return self._data.__dlpack__(stream=stream, **kwargs) if stream is not None else \
            self._data.__dlpack__(**kwargs)
    return self._data.__dlpack__(**kwargs)


def _tensor_dlpack_device(self):
    return self._data.__dlpack_device__()


Tensor.__dlpack__ = _tensor_dlpack
Tensor.__dlpack_device__ = _tensor_dlpack_device


def from_dlpack(obj) -> Tensor:
    """Wrap any object with ``__dlpack__`` (numpy, CuPy, torch, vt) or a DLPack capsule, zero-copy."""
    if isinstance(obj, Tensor):
        return obj
    if hasattr(obj, "__dlpack_device__"):
        dev_type, dev_id = obj.__dlpack_device__()
        if int(dev_type) in (_KDL_CPU, _KDL_CUDA_HOST):
            if type(obj).__module__.startswith("torch") and str(getattr(obj, "dtype", "")) == "torch.bfloat16":
                # numpy has no DLPack bfloat16: reinterpret the bits (still zero-copy)
                import ml_dtypes
                arr = np.from_dlpack(obj.view(__import__("torch").int16)).view(ml_dtypes.bfloat16)
                return Tensor._make(arr, CPU)
            return Tensor._make(np.from_dlpack(obj), CPU)
        if int(dev_type) == _KDL_CUDA:
            cp = _be.cupy_module()
            with cp.cuda.Device(int(dev_id)):
                arr = cp.from_dlpack(obj)
            return Tensor._make(arr, Device("cuda", int(dev_id)))
        raise TypeError(f"from_dlpack: unsupported DLPack device type {dev_type} (only CPU and CUDA)")
    if type(obj).__name__ == "PyCapsule":
        # legacy capsule: which library owns it is unknown; try CPU first, then CUDA
        try:
            return Tensor._make(np.from_dlpack(_Capsule(obj)), CPU)
        except Exception:
            cp = _be.cupy_module()
            arr = cp.from_dlpack(obj)
            return Tensor._make(arr, Device("cuda", arr.device.id))
    raise TypeError(f"from_dlpack expects an object with __dlpack__ or a DLPack capsule, got {type(obj).__name__}")


class _Capsule:
    """Adapter: numpy.from_dlpack wants an object with __dlpack__, not a bare capsule."""

    def __init__(self, cap):
        self._cap = cap

    def __dlpack__(self, **kwargs):
        return self._cap

    def __dlpack_device__(self):
        return (_KDL_CPU, 0)
