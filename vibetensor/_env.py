"""Every VT_* environment flag, typed and documented, read in this one place.

Flags are read when first asked for (``flags()``), so tests may set ``os.environ`` before use and
call ``reload()`` to pick up changes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer; set it to a whole number or unset it") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set it to e.g. 300 or unset it") from None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, on/off")


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    v = raw.strip().lower()
    if v not in choices:
        raise ValueError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return v


@dataclass(frozen=True)
class Flags:
    cpu_devices: int              # VT_CPU_DEVICES: number of virtual CPU devices cpu:0..N-1 (0: only "cpu")
    topology_file: str | None     # VT_TOPOLOGY_FILE: read the Fabric topology from this JSON file
    collective_timeout: float     # VT_COLLECTIVE_TIMEOUT: seconds before a collective raises CollectiveTimeout
    debug_collectives: bool       # VT_DEBUG_COLLECTIVES: compare a fingerprint of every collective across ranks
    events: str                   # VT_EVENTS: off | basic | full (event ring detail)
    events_capacity: int          # VT_EVENTS_CAPACITY: size of the per-process event ring
    dump_dir: str                 # VT_DUMP_DIR: where event-ring dumps and rank error files go
    fused_kernels: bool           # VT_FUSED_KERNELS: use the fused CUDA kernels (0 = generic CuPy paths)
    # VT_FLASH_ATTENTION: auto | on | off: flash-style attention. auto: the tensor-core (float16/bfloat16) and
    # tiled float32 kernels at every size, the CUDA-core ones for small problems (cuda/fused.py)
    flash_attention: str


def _read() -> Flags:
    return Flags(
        cpu_devices=_int("VT_CPU_DEVICES", 0),
        topology_file=os.environ.get("VT_TOPOLOGY_FILE") or None,
        collective_timeout=_float("VT_COLLECTIVE_TIMEOUT", 300.0),
        debug_collectives=_bool("VT_DEBUG_COLLECTIVES", False),
        events=_choice("VT_EVENTS", "basic", ("off", "basic", "full")),
        events_capacity=_int("VT_EVENTS_CAPACITY", 2000),
        dump_dir=os.environ.get("VT_DUMP_DIR") or os.path.join(os.getcwd(), "vt_dumps"),
        fused_kernels=_bool("VT_FUSED_KERNELS", True),
        flash_attention=_choice("VT_FLASH_ATTENTION", "auto", ("auto", "on", "off")),
    )


_flags: Flags | None = None


def flags() -> Flags:
    global _flags
    if _flags is None:
        _flags = _read()
    return _flags


def reload() -> Flags:
    """Re-read the environment (tests change it)."""
    global _flags
    _flags = _read()
    return _flags


FLAG_NAMES = tuple(f.name for f in fields(Flags))
