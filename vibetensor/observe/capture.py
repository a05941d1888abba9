"""``snapshot()``: this process's ring, counters and identity as plain JSON-serialisable data.

The same structure is what ``dump()`` writes to disk and what ``vt-trace`` reads back, so a live
snapshot and a dump file go through the same Chrome-trace and analysis code.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
from importlib import import_module

from .stats import stats

_ev = import_module(".events", __package__)  # the module (the package's `events` is the function)

FORMAT = "vibetensor.observe.dump/1"
# Where a rank comes from when nobody called set_rank (launcher/collectives normally do).
_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")
_WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")


def _env_int(names) -> tuple[int | None, str | None]:
    for var in names:
        raw = os.environ.get(var, "")
        if raw.strip().lstrip("-").isdigit():
            return int(raw), var
    return None, None


def _resolved():
    """The project's one rank resolver (vibetensor.rank_env), or None where it cannot say."""
    try:
        from ..rank_env import resolve
        info = resolve()
    except Exception:  # a half-configured environment must not stop a dump
        return None
    return info if info.launcher is not None else None


def current_rank() -> tuple[int, str]:
    """(rank, where it came from): ``set_rank`` first, then the launcher's variables, else 0."""
    r = _ev.rank()
    if r is not None:
        return r, "set_rank"
    info = _resolved()
    if info is not None:
        return info.rank, f"{info.launcher} ({info.sources.get('rank', '?')})"
    r, var = _env_int(_RANK_VARS)
    return (r, var) if r is not None else (0, "default")


def current_world_size() -> int | None:
    w = _ev.world_size()
    if w is not None:
        return w
    info = _resolved()
    return info.world_size if info is not None else _env_int(_WORLD_VARS)[0]


def thread_stacks() -> list[dict]:
    """Every live thread's current Python stack (where each one is waiting when a job hangs)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append({"ident": ident, "name": names.get(ident, f"thread {ident}"),
                    "stack": "".join(traceback.format_stack(frame))})
    return out


def snapshot(include_stacks: bool = False) -> dict:
    """Events (oldest first), counters and process identity as plain data (JSON-serialisable)."""
    evs = _ev.events()
    latest = _ev.latest_seq()
    cleared = _ev.cleared_before()
    rank, rank_source = current_rank()
    snap = {
        "format": FORMAT,
        "rank": rank,
        "rank_source": rank_source,
        "world_size": current_world_size(),
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "mode": _ev.mode().value,
        "capacity": _ev.capacity(),
        "latest_seq": latest,
        # Events recorded since the last clear() but no longer in the ring (it wrapped).
        "dropped": max(0, latest + 1 - max(cleared, 0) - len(evs)),
        "cleared_before_seq": cleared,
        "oldest_seq": evs[0].seq if evs else None,
        "wall_time_ns": time.time_ns(),
        "perf_counter_ns": time.perf_counter_ns(),
        "thread_names": {str(t.ident): t.name for t in threading.enumerate()},
        "events": [e.to_dict() for e in evs],
        "stats": stats(),
    }
    if include_stacks:
        snap["threads"] = thread_stacks()
    return snap
