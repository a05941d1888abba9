"""``vt.cuda.amp``: GradScaler and autocast (CUDA defaults)."""
from .amp_scaler import GradScaler  # noqa: F401


def autocast(dtype=None, enabled: bool = True, cache_enabled: bool = True):
    from ..amp import autocast as _ac
    return _ac("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)
