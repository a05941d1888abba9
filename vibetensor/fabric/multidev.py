"""Single-process multi-device execution: one stream per local device (CUDA), sequential on CPU.

Work for a device runs with that device current and its own CuPy stream, so kernels on different
GPUs overlap; before a shard leaves its device, ``sync`` waits for that device's stream."""
from __future__ import annotations

import contextlib
import threading

from ..core import backend as _be

_streams: dict = {}
_lock = threading.Lock()


def stream_for(dev):
    """The CuPy stream this process uses for Fabric work on ``dev`` (None for CPU devices)."""
    if dev.type != "cuda":
        return None
    s = _streams.get(dev)
    if s is None:
        cp = _be.cupy_module()
        with _lock, cp.cuda.Device(dev.index):
            s = _streams.get(dev)
            if s is None:
                s = _streams[dev] = cp.cuda.Stream(non_blocking=False)
    return s


@contextlib.contextmanager
def on(dev):
    """Run the body on ``dev`` (current device + its Fabric stream)."""
    if dev.type != "cuda":
        yield
        return
    s = stream_for(dev)
    with _be.device_guard(dev), s:
        yield


def sync(dev) -> None:
    if dev.type == "cuda":
        s = _streams.get(dev)
        if s is not None:
            s.synchronize()


def sync_all() -> None:
    for s in list(_streams.values()):
        s.synchronize()
