"""``vt.cuda``: devices, streams/events, the caching allocator's statistics, CUDA graphs, AMP.

Everything here needs CuPy and a GPU, except ``is_available()``/``device_count()`` which answer
False/0 without them.
"""
from __future__ import annotations

from ..core import backend as _be
from .streams import Stream, Event, current_stream, default_stream, stream  # noqa: F401
from .memory import (  # noqa: F401
    OutOfMemoryError, memory_allocated, memory_reserved, max_memory_allocated, reset_peak_memory_stats,
    memory_stats, memory_snapshot, set_per_process_memory_fraction, empty_cache, _record_memory_history,
)
from .graphs import CUDAGraph, graph, make_graphed_step, is_current_stream_capturing  # noqa: F401
from . import amp  # noqa: F401


def is_available() -> bool:
    return _be.cuda_available()


def device_count() -> int:
    return _be.cuda_device_count()


def _cp():
    return _be.cupy_module()


def set_device(device):
    from .streams import _device_index
    _cp().cuda.Device(_device_index(device)).use()


def current_device() -> int:
    return _cp().cuda.runtime.getDevice()


def synchronize(device=None):
    from .streams import _device_index
    cp = _cp()
    with cp.cuda.Device(_device_index(device)):
        cp.cuda.runtime.deviceSynchronize()
    _be.flush_checks()


def get_device_name(device=None) -> str:
    return get_device_properties(device).name


class _Props:
    def __init__(self, d: dict, idx: int):
        name = d.get("name", b"")
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        self.total_memory = int(d.get("totalGlobalMem", 0))
        self.major = int(d.get("major", 0))
        self.minor = int(d.get("minor", 0))
        self.multi_processor_count = int(d.get("multiProcessorCount", 0))
        self.index = idx
        self.raw = d

    def __repr__(self):
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
                f"total_memory={self.total_memory // (1 << 20)}MB, multi_processor_count={self.multi_processor_count})")


def get_device_properties(device=None) -> _Props:
    from .streams import _device_index
    idx = _device_index(device)
    return _Props(_cp().cuda.runtime.getDeviceProperties(idx), idx)


def manual_seed(seed: int):
    from ..core.random import default_generator
    from ..core.device import Device
    default_generator(Device("cuda", current_device())).manual_seed(seed)


def manual_seed_all(seed: int):
    from ..core.random import default_generator
    from ..core.device import Device
    for i in range(device_count()):
        default_generator(Device("cuda", i)).manual_seed(seed)
