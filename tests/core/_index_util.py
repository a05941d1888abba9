"""Helpers shared by test_index.py and test_index_sort.py."""
import numpy as np
import pytest

import vibetensor as vt


def _skip_cuda_bf16(device, dt):
    if device == "cuda" and dt is vt.bfloat16:
        from vibetensor.core import backend
        try:
            backend.check_cuda_dtype(dt)
        except TypeError:
            pytest.skip("installed CuPy has no bfloat16")


def _rand_of(shape, dt):
    a = np.random.randn(*shape) * 5
    if dt is vt.bool:
        return a > 0
    if dt is vt.uint8:
        return np.abs(a).astype(np.uint8)
    return a.astype(dt.np)


# ------------------------------------------------------------------------------------------- getitem
