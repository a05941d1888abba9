"""CUDA streams and events over CuPy's. ``with vt.cuda.Stream():`` makes vt ops on that device
run on the stream (CuPy's current-stream context is what every kernel launch reads)."""
from __future__ import annotations

from ..core import backend as _be


def _cp():
    return _be.cupy_module()


class Stream:
    """A CUDA stream. ``priority``: lower is higher priority, as in CUDA."""

    def __init__(self, device=None, priority: int = 0, _wrap=None):
        cp = _cp()
        if _wrap is not None:
            self._s = _wrap
            self.device_index = cp.cuda.runtime.getDevice() if device is None else device
            return
        idx = _device_index(device)
        with cp.cuda.Device(idx):
            self._s = cp.cuda.Stream(non_blocking=True, priority=priority)
        self.device_index = idx
        self._ctx = []

    @property
    def cuda_stream(self) -> int:
        return self._s.ptr

    @property
    def device(self):
        from ..core.device import Device
        return Device("cuda", self.device_index)

    def __enter__(self):
        cp = _cp()
        dev = cp.cuda.Device(self.device_index)
        dev.__enter__()
        self._s.__enter__()
        self.__dict__.setdefault("_ctx", []).append(dev)
        return self

    def __exit__(self, *exc):
        self._s.__exit__(*exc)
        self._ctx.pop().__exit__(*exc)
        return False

    def wait_event(self, event: "Event"):
        self._s.wait_event(event._e)

    def wait_stream(self, other: "Stream"):
        ev = Event()
        ev.record(other)
        self.wait_event(ev)

    def record_event(self, event: "Event | None" = None) -> "Event":
        event = event or Event()
        event.record(self)
        return event

    def query(self) -> bool:
        return self._s.done

    def synchronize(self):
        self._s.synchronize()

    def __eq__(self, other):
        return isinstance(other, Stream) and self._s.ptr == other._s.ptr and \
            self.device_index == other.device_index

    def __hash__(self):
        return hash((self._s.ptr, self.device_index))

    def __repr__(self):
        return f"<vt.cuda.Stream device=cuda:{self.device_index} cuda_stream=0x{self._s.ptr:x}>"


class Event:
    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        cp = _cp()
        self._e = cp.cuda.Event(block=blocking, disable_timing=not enable_timing, interprocess=interprocess)
        self.enable_timing = enable_timing

    def record(self, stream: Stream | None = None):
        s = (stream or current_stream())._s
        self._e.record(s)
        return self

    def wait(self, stream: Stream | None = None):
        (stream or current_stream()).wait_event(self)

    def query(self) -> bool:
        return self._e.done

    def synchronize(self):
        self._e.synchronize()

    def elapsed_time(self, end: "Event") -> float:
        """Milliseconds between this event and ``end`` (both recorded with enable_timing=True)."""
        if not (self.enable_timing and end.enable_timing):
            raise ValueError("elapsed_time needs both events created with Event(enable_timing=True)")
        return _cp().cuda.get_elapsed_time(self._e, end._e)

    def __repr__(self):
        return f"<vt.cuda.Event timing={self.enable_timing}>"


def _device_index(device) -> int:
    cp = _cp()
    if device is None:
        return cp.cuda.runtime.getDevice()
    if isinstance(device, int):
        return device
    from ..core.device import device as _as_device
    d = _as_device(device)
    if d.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {d}")
    return d.index


def current_stream(device=None) -> Stream:
    cp = _cp()
    idx = _device_index(device)
    with cp.cuda.Device(idx):
        return Stream(idx, _wrap=cp.cuda.get_current_stream())


def default_stream(device=None) -> Stream:
    cp = _cp()
    return Stream(_device_index(device), _wrap=cp.cuda.Stream.null)


class stream:
    """``with vt.cuda.stream(s):`` (None is a no-op), as torch.cuda.stream."""

    def __init__(self, s: Stream | None):
        self.s = s

    def __enter__(self):
        if self.s is not None:
            self.s.__enter__()
        return self.s

    def __exit__(self, *exc):
        if self.s is not None:
            self.s.__exit__(*exc)
        return False
