"""``vt.observe``: the event ring (flight recorder), stats counters, Chrome-trace export, dumps.

    vt.observe.record(EventKind.COLLECTIVE_START, "all_reduce", group="world", coll_seq=7, ...)
    vt.observe.mark("epoch 1"); with vt.observe.span("forward"): ...
    vt.observe.events(min_seq, max_events); vt.observe.snapshot(); vt.observe.counter_add("x")
"""
from .events import (  # noqa: F401
    Event, EventKind, Mode, record, events, latest_seq, clear, wait_for_event_seq, mark, span,
    set_mode, mode, enabled, set_rank, set_capacity,
)
from .stats import counter_add, stats, reset_stats  # noqa: F401


def snapshot() -> dict:
    """Events and counters as plain data (JSON-serialisable)."""
    return {"events": [e.to_dict() for e in events()], "stats": stats(), "mode": mode().value}
