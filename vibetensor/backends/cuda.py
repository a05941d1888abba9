"""CUDA backend switches. TF32 for float32 matmuls maps to CuPy's cuBLAS compute type."""
from __future__ import annotations


class _Matmul:
    def __init__(self):
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value: bool):
        self._allow_tf32 = bool(value)
        apply()


matmul = _Matmul()


def apply():
    """Push the setting into CuPy (a no-op without CuPy)."""
    from ..core import backend as _be
    if not _be.cuda_available():
        return
    import numpy as np
    from cupy._core import _routines_linalg as rl  # CuPy's per-dtype cuBLAS compute-type switch
    rl.set_compute_type(np.dtype(np.float32), rl.COMPUTE_TYPE_TF32 if matmul._allow_tf32 else rl.COMPUTE_TYPE_DEFAULT)
