"""The event ring (flight recorder): one bounded ring of typed, frozen events per process.

Hot path, no lock: a writer takes a sequence number from a process-wide ``itertools.count`` (its
``__next__`` is one C call, atomic under the GIL) and stores a plain tuple into slot
``seq % capacity`` (a list item assignment, also atomic). ``Event`` objects are built only when
someone reads the ring (``events()``, ``snapshot()``, ``dump()``), so recording costs one tuple.
``latest_seq()`` is the max over per-thread "last published" entries: every thread writes only its
own dict key, so no read-modify-write race can move it backwards.

``off`` mode: ``record()`` returns after reading one global. Sequence numbers are never reused
within a process (``clear()`` and ``set_capacity()`` keep counting), so waiters and dumps stay
unambiguous.
"""
from __future__ import annotations

import contextlib
import itertools
import linecache
import operator
import os
import sys
import threading
import time
from dataclasses import dataclass, field, fields as dc_fields
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
    seq: int                    # per-process event sequence number (monotonic, never reused)
    kind: EventKind
    ts_ns: int                  # time.perf_counter_ns() at record (monotonic; see ts_wall_ns)
    ts_wall_ns: int             # wall clock (ns since the epoch) at record; aligns ranks in merged traces
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
    stack: str | None = None    # Python stack (outermost call first), FULL mode only
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable data (``kind`` as its string; odd extra values as ``repr``)."""
        d = {name: getattr(self, name) for name in _FIELD_NAMES}
        d["kind"] = self.kind.value
        d["extra"] = {str(k): _jsonable(v) for k, v in self.extra.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Event":
        """Inverse of ``to_dict`` (unknown keys go to ``extra``), e.g. for events read from a dump."""
        known = {k: v for k, v in d.items() if k in _FIELD_SET}
        extra = dict(known.pop("extra", None) or {})
        extra.update({k: v for k, v in d.items() if k not in _FIELD_SET})
        known["kind"] = EventKind(known["kind"])
        return cls(extra=extra, **known)


_FIELD_NAMES = tuple(f.name for f in dc_fields(Event))
_FIELD_SET = frozenset(_FIELD_NAMES)
# Fields record() sets itself; a caller passing one of these names gets it under ``extra``.
_RESERVED = frozenset({"seq", "kind", "ts_ns", "ts_wall_ns", "name", "pid", "tid", "rank", "stack"})
_STACK_LIMIT = 32
_OBSERVE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


class _Ring:
    __slots__ = ("capacity", "slots")

    def __init__(self, capacity: int):
        try:
            capacity = operator.index(capacity)  # ints and numpy integers; not floats or bools-as-text
        except TypeError:
            capacity = None
        if capacity is None or capacity <= 0:
            raise ValueError(f"event ring capacity must be a positive integer, got {capacity!r} "
                             "(set VT_EVENTS_CAPACITY or call set_capacity with e.g. 2000)")
        self.capacity = capacity
        self.slots: list = [None] * capacity


# ---- process-wide state (small, explicit) --------------------------------------------------------
_mode = Mode(_env.flags().events)
_off = _mode is Mode.OFF            # the one global record() reads in off mode
_full = _mode is Mode.FULL
_ring = _Ring(_env.flags().events_capacity)
_counter = itertools.count()        # next sequence number; never reset
_last: dict[int, int] = {}          # thread ident -> last seq that thread published
_cleared_before = 0                 # seqs below this were dropped by clear()
_rank: int | None = None
_world_size: int | None = None
_pid = os.getpid()
_cond = threading.Condition()       # only waiters (wait_for_event_seq) ever take it
_waiters = 0
_get_ident = threading.get_ident
_perf_ns = time.perf_counter_ns


def _after_fork_in_child() -> None:
    global _pid, _cond, _waiters
    _pid = os.getpid()
    _cond = threading.Condition()  # a lock held by another parent thread would never be released
    _waiters = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_mode(mode) -> None:
    """``off`` | ``basic`` | ``full`` (full adds the Python stack to every event)."""
    global _mode, _off, _full
    try:
        m = Mode(mode.value if isinstance(mode, Mode) else str(mode).lower())
    except ValueError:
        raise ValueError(f"event mode must be one of off, basic, full; got {mode!r}") from None
    _mode, _full = m, m is Mode.FULL
    _off = m is Mode.OFF


def mode() -> Mode:
    return _mode


def enabled() -> bool:
    return not _off


def set_rank(rank: int | None, world_size: int | None = None) -> None:
    """Tag events with this process's rank (set by collectives / the launcher bootstrap)."""
    global _rank, _world_size
    _rank = None if rank is None else int(rank)
    if world_size is not None:
        _world_size = int(world_size)


def rank() -> int | None:
    return _rank


def world_size() -> int | None:
    return _world_size


def capacity() -> int:
    return _ring.capacity


def set_capacity(capacity: int) -> None:
    """Resize the ring, keeping the most recent events that still fit."""
    global _ring
    old, new = _ring, _Ring(capacity)
    recs = sorted((r for r in list(old.slots) if r is not None), key=lambda r: r[0])
    for r in recs[-new.capacity:]:
        new.slots[r[0] % new.capacity] = r
    _ring = new


def _capture_stack():
    """(filename, lineno, function) of the caller's frames, innermost first, skipping this package."""
    try:
        f = sys._getframe(2)
    except ValueError:  # called from the outermost frame
        f = None
    while f is not None and f.f_code.co_filename.startswith(_OBSERVE_DIR):
        f = f.f_back
    out = []
    while f is not None and len(out) < _STACK_LIMIT:
        out.append((f.f_code.co_filename, f.f_lineno, f.f_code.co_name))
        f = f.f_back
    return tuple(out)


def record(kind, name: str = "", **fields) -> int:
    """Append an event; returns its sequence number (-1 when events are off).

    ``fields`` are Event fields (group, coll_seq, op, dtype, count, nbytes, peer, device, state,
    duration_ns); any other keyword lands in ``Event.extra``.
    """
    if _off:
        return -1
    if kind.__class__ is not EventKind:
        kind = EventKind(kind)
    seq = next(_counter)
    tid = _get_ident()
    ring = _ring
    ring.slots[seq % ring.capacity] = (seq, kind, _perf_ns(), name, fields, tid, _rank, _pid,
                                       _capture_stack() if _full else None)
    _last[tid] = seq
    if _waiters:
        with _cond:
            _cond.notify_all()
    return seq


def _format_stack(frames) -> str:
    lines = []
    for filename, lineno, func in reversed(frames):
        lines.append(f'  File "{filename}", line {lineno}, in {func}\n')
        src = linecache.getline(filename, lineno).strip()
        if src:
            lines.append(f"    {src}\n")
    return "".join(lines)


def _materialize(rec, wall_offset: int) -> Event:
    seq, kind, ts, name, kw, tid, rank, pid, frames = rec
    known, extra = {}, {}
    for k, v in kw.items():
        if k == "extra" and isinstance(v, dict):
            extra.update(v)
        elif k in _FIELD_SET and k not in _RESERVED:
            known[k] = v
        else:
            extra[k] = v
    return Event(seq=seq, kind=kind, ts_ns=ts, ts_wall_ns=ts + wall_offset, name=name, pid=pid,
                 tid=tid, rank=rank, stack=_format_stack(frames) if frames else None, extra=extra,
                 **known)


def wall_offset_ns() -> int:
    """time.time_ns() - time.perf_counter_ns() now: maps event ``ts_ns`` onto the wall clock."""
    return time.time_ns() - _perf_ns()


def events(min_seq: int = 0, max_events: int | None = None) -> list[Event]:
    """Events with seq >= min_seq still in the ring, oldest first (at most max_events)."""
    if max_events is not None and max_events < 0:
        raise ValueError(f"max_events must be >= 0 or None, got {max_events}")
    recs = [r for r in list(_ring.slots) if r is not None and r[0] >= min_seq]
    recs.sort(key=lambda r: r[0])
    if max_events is not None:
        recs = recs[:max_events]
    off = wall_offset_ns()
    return [_materialize(r, off) for r in recs]


def latest_seq() -> int:
    """The highest sequence number recorded so far in this process (-1 before the first event)."""
    vals = tuple(_last.values())
    return max(vals) if vals else -1


def clear() -> None:
    """Empty the ring (sequence numbers keep counting up)."""
    global _ring, _cleared_before
    _cleared_before = latest_seq() + 1
    _ring = _Ring(_ring.capacity)


def cleared_before() -> int:
    """Sequence numbers below this were dropped by ``clear()`` (0 if never cleared)."""
    return _cleared_before


def wait_for_event_seq(seq: int, timeout_ms: int) -> bool:
    """Block until an event with sequence number >= seq was recorded; False on timeout."""
    global _waiters
    deadline = time.monotonic() + max(0.0, timeout_ms) / 1000.0
    cond = _cond
    with cond:
        _waiters += 1  # before the check below: a writer publishing after it will notify us
        try:
            while latest_seq() < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                cond.wait(left)
            return True
        finally:
            _waiters -= 1


def mark(name: str, **fields) -> int:
    """An instant event (a marker in the Chrome trace)."""
    return record(EventKind.MARK, name, **fields)


@contextlib.contextmanager
def span(name: str, **fields):
    """``with vt.observe.span("forward"):`` -- a begin/end pair (a slice in the Chrome trace).

    Also a decorator (``@vt.observe.span("step")``). Yields the begin event's sequence number.
    """
    if _off:
        yield -1
        return
    t0 = _perf_ns()
    seq = record(EventKind.SPAN_BEGIN, name, **fields)
    try:
        yield seq
    finally:
        record(EventKind.SPAN_END, name, duration_ns=_perf_ns() - t0, **fields)
