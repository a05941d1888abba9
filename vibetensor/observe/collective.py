"""One-line call sites for the collectives layer: ``begin``/``end`` a collective in the event ring.

    tok = observe.collective.begin("world", seq, "all_reduce", op="sum", dtype="float32",
                                   count=n, nbytes=n * 4, device="cpu:0")
    ...
    observe.collective.end(tok)                      # or end(tok, "timeout") / end(tok, "error")

``begin`` records COLLECTIVE_START (state "started"); ``end`` records COLLECTIVE_COMPLETE /
TIMEOUT / ERROR with the same fields plus ``duration_ns``. With events off both return at once.
Optional ``ranks=(global ranks of the group)`` or ``group_size=`` let ``vt-trace analyze`` tell
which ranks of a subgroup never joined.
"""
from __future__ import annotations

import contextlib
import time
from importlib import import_module

from .events import EventKind

_ev = import_module(".events", __package__)  # the module (the package's `events` is the function)

# Point-to-point ops number themselves apart from the group's collectives (their coll_seq is a
# separate counter), so trace and analysis keep them off the collective sequence.
P2P_NAMES = frozenset({"send", "recv", "isend", "irecv", "batch_isend_irecv"})


def is_p2p(event: dict) -> bool:
    """Whether an event dict (``Event.to_dict()``) is a point-to-point op, by name or ``p2p=True``."""
    return event.get("name") in P2P_NAMES or bool((event.get("extra") or {}).get("p2p"))


_END = {"completed": EventKind.COLLECTIVE_COMPLETE, "timeout": EventKind.COLLECTIVE_TIMEOUT,
        "error": EventKind.COLLECTIVE_ERROR}


def _group_name(group) -> str:
    return group if isinstance(group, str) else (getattr(group, "name", None) or str(group))


def enqueue(group, coll_seq: int, name: str, **fields) -> int:
    """COLLECTIVE_ENQUEUE: the op was queued (async) but has not started moving bytes."""
    if not _ev.enabled():
        return -1
    return _ev.record(EventKind.COLLECTIVE_ENQUEUE, name, group=_group_name(group), coll_seq=coll_seq,
                      state="enqueued", **fields)


def begin(group, coll_seq: int, name: str, **fields):
    """Record COLLECTIVE_START; returns a token for ``end`` (None when events are off)."""
    if not _ev.enabled():
        return None
    g = _group_name(group)
    t0 = time.perf_counter_ns()
    _ev.record(EventKind.COLLECTIVE_START, name, group=g, coll_seq=coll_seq, state="started", **fields)
    return (t0, g, coll_seq, name, fields)


def end(token, state: str = "completed", **fields) -> int:
    """Record the end of the collective ``begin`` returned ``token`` for; returns the event's seq.

    ``state``: "completed" | "timeout" | "error"; ``fields`` add to / override begin's (e.g.
    ``error="..."``, ``missing_ranks=(1,)``).
    """
    kind = _END.get(state)
    if kind is None:
        raise ValueError(f"collective end state must be one of {', '.join(_END)}; got {state!r}")
    if token is None:
        return -1
    t0, g, coll_seq, name, base = token
    merged = {**base, **fields}
    merged.pop("state", None)
    return _ev.record(kind, name, group=g, coll_seq=coll_seq, state=state,
                      duration_ns=time.perf_counter_ns() - t0, **merged)


@contextlib.contextmanager
def collective(group, coll_seq: int, name: str, **fields):
    """``with collective("world", 3, "barrier"):`` -- begin/end around a block; an exception ends it
    as "timeout" (a ``CollectiveTimeout``, matched by class name) or "error", and propagates."""
    tok = begin(group, coll_seq, name, **fields)
    try:
        yield tok
    except BaseException as exc:
        timed_out = any(c.__name__ == "CollectiveTimeout" for c in type(exc).__mro__)
        end(tok, "timeout" if timed_out else "error", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    else:
        end(tok)
