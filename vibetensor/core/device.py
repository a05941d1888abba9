"""Devices: ``cpu``, virtual CPU devices ``cpu:0..N-1`` (VT_CPU_DEVICES=N) and ``cuda:N``."""
from __future__ import annotations

from dataclasses import dataclass

from .. import _env

_CACHE: dict = {}
_INTERNED: dict = {}  # (type, index) -> the one Device: the dispatcher's same-device test is an identity test


@dataclass(frozen=True, slots=True, init=False)
class Device:
    """One object per (type, index): ``Device("cuda", 0)``, ``vt.device("cuda:0")`` and a tensor's
    ``device`` are the same object, so the dispatcher's same-device test is an identity test."""

    type: str                 # "cpu" | "cuda"
    index: int | None = None  # None: plain "cpu" (or the current CUDA device, resolved at parse time)

    def __new__(cls, type, index=None):
        index = None if index is None else int(index)
        d = _INTERNED.get((type, index))
        if d is None:
            d = object.__new__(cls)
            object.__setattr__(d, "type", type)  # set once, here: the object is shared
            object.__setattr__(d, "index", index)
            _INTERNED[(type, index)] = d
        return d

    def __init__(self, type, index=None):
        pass  # the fields were set by __new__

    def __reduce__(self):  # pickles, copies and deep copies come back as the interned object
        return (Device, (self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    @property
    def is_cuda(self) -> bool:
        return self.type == "cuda"


def device(spec, index: int | None = None) -> Device:
    """Parse ``"cpu"``, ``"cpu:1"``, ``"cuda"``, ``"cuda:0"``, a Device, or an int (a CUDA ordinal)."""
    if isinstance(spec, Device) and index is None:
        return spec
    key = (spec, index)
    hit = _CACHE.get(key) if isinstance(spec, (str, int)) else None
    if hit is not None:
        return hit
    if isinstance(spec, int) and not isinstance(spec, bool):
        out = _check(Device("cuda", spec))
    elif isinstance(spec, str):
        s = spec.strip().lower()
        typ, _, idx = s.partition(":")
        if typ not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'")
        if idx:
            if not idx.isdigit():
                raise ValueError(f"bad device index in {spec!r}: expected a non-negative integer after ':'")
            ix = int(idx)
        else:
            ix = index
        if typ == "cuda" and ix is None:
            from . import backend
            ix = backend.current_cuda_device()
        out = _check(Device(typ, ix))
    elif hasattr(spec, "type") and hasattr(spec, "index"):  # a torch.device
        out = device(str(spec))
    else:
        raise TypeError(f"cannot interpret {spec!r} as a device; pass e.g. 'cpu', 'cuda:0' or vt.device('cpu:1')")
    if isinstance(spec, (str, int)):
        _CACHE[key] = out
    return out


def _check(d: Device) -> Device:
    if d.type == "cpu" and d.index is not None:
        n = _env.flags().cpu_devices
        if d.index >= max(n, 1):
            raise ValueError(
                f"device 'cpu:{d.index}' does not exist: VT_CPU_DEVICES={n} gives cpu:0..cpu:{max(n, 1) - 1}; "
                f"set VT_CPU_DEVICES={d.index + 1} or more to create virtual CPU devices")
    return d


CPU = Device("cpu")


def cpu_devices() -> list[Device]:
    """The virtual CPU devices (``[cpu]`` when VT_CPU_DEVICES is unset)."""
    n = _env.flags().cpu_devices
    return [Device("cpu", i) for i in range(n)] if n > 0 else [CPU]
