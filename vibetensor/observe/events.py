"""The event ring (flight recorder): one bounded ring of typed, frozen events per process.

Writers take a sequence number from an atomic counter and store into slot ``seq % capacity``: no
lock on the hot path (itertools.count and list item assignment are atomic under the GIL). ``off``
mode returns before building anything, so instrumented code costs one attribute read.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import traceback
from dataclasses import dataclass, field, asdict
from enum import Enum

from .. import _env


class EventKind(str, Enum):
    COLLECTIVE_ENQUEUE = "collective_enqueue"
    COLLECTIVE_START = "collective_start"
    COLLECTIVE_COMPLETE = "collective_complete"
    COLLECTIVE_TIMEOUT = "collective_timeout"
    COLLECTIVE_ERROR = "collective_error"
    FABRIC_COPY = "fabric_copy"
    FABRIC_OP = "fabric_op"
    FABRIC_FALLBACK = "fabric_fallback"
    ALLOC = "alloc"
    FREE = "free"
    OOM = "oom"
    MARK = "mark"
    SPAN_BEGIN = "span_begin"
    SPAN_END = "span_end"


class Mode(str, Enum):
    OFF = "off"
    BASIC = "basic"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Event:
    seq: int                    # per-process event sequence number (monotonic)
    kind: EventKind
    ts_ns: int                  # time.perf_counter_ns() at record (monotonic; see ts_wall_ns)
    ts_wall_ns: int             # time.time_ns() at record (aligns ranks in merged traces)
    name: str = ""              # op name / mark / span name
    group: str | None = None    # process group name
    coll_seq: int | None = None  # the collective's sequence number within its group
    op: str | None = None       # reduce op or collective kind detail
    dtype: str | None = None
    count: int | None = None    # elements
    nbytes: int | None = None
    peer: int | None = None     # peer or root rank
    device: str | None = None
    state: str | None = None    # enqueued | started | completed | timeout | error
    duration_ns: int | None = None
    pid: int = 0
    tid: int = 0
    rank: int | None = None
    stack: str | None = None    # Python stack, FULL mode only
    extra: dict = field(default_factory=dict)

    def to_dict(self):
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


class _Ring:
    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"event ring capacity must be positive, got {capacity} (VT_EVENTS_CAPACITY)")
        self.capacity = capacity
        self.slots: list = [None] * capacity
        self.counter = itertools.count()
        self.last = -1
        self.cond = threading.Condition()


_mode = Mode(_env.flags().events)
_ring = _Ring(_env.flags().events_capacity)
_rank: int | None = None
_pid = os.getpid()


def set_mode(mode) -> None:
    """``off`` | ``basic`` | ``full`` (full adds the Python stack to every event)."""
    global _mode
    try:
        _mode = Mode(mode.value if isinstance(mode, Mode) else str(mode).lower())
    except ValueError:
        raise ValueError(f"event mode must be one of off, basic, full; got {mode!r}") from None


def mode() -> Mode:
    return _mode


def enabled() -> bool:
    return _mode is not Mode.OFF


def set_rank(rank: int | None) -> None:
    """Tag events with this process's rank (set by collectives / the launcher bootstrap)."""
    global _rank
    _rank = rank


def set_capacity(capacity: int) -> None:
    global _ring
    _ring = _Ring(int(capacity))


def record(kind, name: str = "", **fields) -> int:
    """Append an event; returns its sequence number (-1 when events are off)."""
    if _mode is Mode.OFF:
        return -1
    ring = _ring
    seq = next(ring.counter)
    k = kind if isinstance(kind, EventKind) else EventKind(kind)
    extra = fields.pop("extra", None) or {}
    known = Event.__dataclass_fields__
    for key in [k2 for k2 in fields if k2 not in known]:
        extra[key] = fields.pop(key)
    ev = Event(seq=seq, kind=k, ts_ns=time.perf_counter_ns(), ts_wall_ns=time.time_ns(), name=name,
               pid=_pid, tid=threading.get_ident(), rank=_rank,
               stack="".join(traceback.format_stack(limit=16)[:-1]) if _mode is Mode.FULL else None,
               extra=extra, **fields)
    ring.slots[seq % ring.capacity] = ev
    if seq > ring.last:
        ring.last = seq
    if _waiters:
        with ring.cond:
            ring.cond.notify_all()
    return seq


_waiters = 0


def events(min_seq: int = 0, max_events: int | None = None) -> list[Event]:
    """Events with seq >= min_seq still in the ring, oldest first (at most max_events)."""
    ring = _ring
    out = [e for e in list(ring.slots) if e is not None and e.seq >= min_seq]
    out.sort(key=lambda e: e.seq)
    if max_events is not None:
        out = out[:max_events]
    return out


def latest_seq() -> int:
    return _ring.last


def clear() -> None:
    global _ring
    _ring = _Ring(_ring.capacity)


def wait_for_event_seq(seq: int, timeout_ms: int) -> bool:
    """Block until an event with sequence number >= seq was recorded; False on timeout."""
    global _waiters
    ring = _ring
    deadline = time.monotonic() + timeout_ms / 1000.0
    with ring.cond:
        _waiters += 1
        try:
            while ring.last < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                ring.cond.wait(left)
            return True
        finally:
            _waiters -= 1


def mark(name: str, **fields) -> int:
    return record(EventKind.MARK, name, **fields)


@contextlib.contextmanager
def span(name: str, **fields):
    """``with vt.observe.span("forward"):`` -- a begin/end pair (a slice in the Chrome trace)."""
    if _mode is Mode.OFF:
        yield
        return
    t0 = time.perf_counter_ns()
    record(EventKind.SPAN_BEGIN, name, **fields)
    try:
        yield
    finally:
        record(EventKind.SPAN_END, name, duration_ns=time.perf_counter_ns() - t0, **fields)
