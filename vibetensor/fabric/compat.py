"""The original Fabric API: explicit cross-device elementwise ops and a stats/events view over
``vibetensor.observe``.

``enable("best_effort")``: ``vt.fabric.add/mul(a, b, primary=...)`` move the non-primary operand
onto the primary device with a recorded copy (FABRIC_COPY) and run there (FABRIC_OP).
``enable("dry_run")``: record what would be copied (FABRIC_OP with ``dry_run``) and fall back to the
plain op -- which raises DeviceMismatchError for operands on different devices, as without Fabric.
``disable()``: the plain op (same-device operands only).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .. import observe as _obs
from ..core.device import device as _as_device
from ..core.tensor import Tensor, V
from . import layout

_MODES = ("off", "best_effort", "dry_run")
_state = {"mode": "off"}
_lock = threading.Lock()


def enable(mode: str = "best_effort") -> None:
    if mode not in ("best_effort", "dry_run"):
        raise ValueError(f"fabric.enable: mode must be 'best_effort' or 'dry_run', got {mode!r}")
    with _lock:
        _state["mode"] = mode


def disable() -> None:
    with _lock:
        _state["mode"] = "off"


def is_enabled() -> bool:
    return _state["mode"] != "off"


def mode() -> str:
    return _state["mode"]


@dataclass(frozen=True)
class FabricStats:
    ops_attempted: int
    ops_hit: int
    ops_fallback: int
    copies: int
    remote_bytes_read: int
    remote_bytes_written: int
    per_device: dict = field(default_factory=dict)       # device -> {"bytes_read_remote": n, ...}
    fallback_reasons: dict = field(default_factory=dict)  # reason -> count

    def to_dict(self):
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def stats() -> FabricStats:
    c = _obs.stats("fabric.")
    per: dict = {}
    for k, v in c.items():
        if k.startswith("fabric.device."):
            dev, _, what = k[len("fabric.device."):].rpartition(".")
            per.setdefault(dev, {})[what] = v
    reasons = {k[len("fabric.fallback_reason."):]: v for k, v in c.items() if k.startswith("fabric.fallback_reason.")}
    return FabricStats(
        ops_attempted=c.get("fabric.ops.attempted", 0), ops_hit=c.get("fabric.ops.hit", 0),
        ops_fallback=c.get("fabric.ops.fallback", 0), copies=c.get("fabric.copies", 0),
        remote_bytes_read=sum(d.get("bytes_read_remote", 0) for d in per.values()),
        remote_bytes_written=sum(d.get("bytes_written_remote", 0) for d in per.values()),
        per_device=per, fallback_reasons=reasons)


def reset_stats() -> None:
    _obs.reset_stats("fabric.")


_FABRIC_KINDS = (_obs.EventKind.FABRIC_COPY, _obs.EventKind.FABRIC_OP, _obs.EventKind.FABRIC_FALLBACK)


def events(min_seq: int = 0, max_events: int | None = None) -> list:
    """Fabric events (copies, ops, fallbacks) with seq >= min_seq, oldest first."""
    out = [e for e in _obs.events(min_seq) if e.kind in _FABRIC_KINDS]
    return out if max_events is None else out[:max_events]


def set_events_mode(mode: str) -> None:
    if mode not in ("off", "basic"):
        raise ValueError(f"fabric.set_events_mode: mode must be 'off' or 'basic', got {mode!r}")
    _obs.set_mode(mode)


def wait_for_event_seq(seq: int, timeout_ms: int) -> bool:
    return _obs.wait_for_event_seq(seq, timeout_ms)


def _binary(name, a, b, primary):
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return getattr(V, name)(a, b)
    if primary is None:
        primary = a._device
    elif isinstance(primary, Tensor):
        primary = primary._device
    elif isinstance(primary, int) and not isinstance(primary, bool) and primary in (0, 1):
        primary = (a, b)[primary]._device
    else:
        primary = _as_device(primary)
    if primary not in (a._device, b._device):
        raise ValueError(f"fabric.{name}: primary {primary} is neither operand's device ({a._device}, {b._device})")
    moves = [(t, t._device) for t in (a, b) if t._device != primary]
    m = _state["mode"]
    _obs.counter_add("fabric.ops.attempted")
    if not moves or m == "off":
        return getattr(V, name)(a, b)
    if m == "dry_run":
        _obs.counter_add("fabric.ops.fallback")
        _obs.counter_add(f"fabric.fallback_reason.{name}: dry_run")
        _obs.record(_obs.EventKind.FABRIC_OP, name, device=str(primary), extra={
            "dry_run": True, "would_copy": [{"from": str(d), "nbytes": int(t._data.nbytes)} for t, d in moves]})
        return getattr(V, name)(a, b)
    a2 = layout.move(a, primary, f"fabric.{name}") if a._device != primary else a
    b2 = layout.move(b, primary, f"fabric.{name}") if b._device != primary else b
    _obs.counter_add("fabric.ops.hit")
    _obs.record(_obs.EventKind.FABRIC_OP, name, device=str(primary))
    return getattr(V, name)(a2, b2)


def add(a, b, *, primary=None):
    """``a + b`` for operands on different devices: the non-primary one is copied to ``primary``
    (a device, a tensor, or 0/1 for a/b; default: a's device). Needs ``enable()``."""
    return _binary("add", a, b, primary)


def mul(a, b, *, primary=None):
    """``a * b`` across devices, like :func:`add`."""
    return _binary("mul", a, b, primary)
