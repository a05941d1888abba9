"""Stats counters beside the event ring: named integer counters (dotted names group them).

No lock on the hot path and no lost updates: ``d[k] = d.get(k, 0) + n`` is a read-modify-write
that two threads could interleave, so every thread adds into its own dict (registered once, under
a lock, on the thread's first add) and ``stats()`` sums the per-thread dicts.
"""
from __future__ import annotations

import threading

_local = threading.local()
_tables: list[dict] = []            # one dict per thread that ever added; dead threads' counts stay
# Taken once per thread, and by readers; reentrant because a SIGUSR1 dump (which reads the
# counters) can run in the main thread while that thread is inside stats().
_register_lock = threading.RLock()


def _table() -> dict:
    d: dict = {}
    with _register_lock:
        _tables.append(d)
    _local.d = d
    return d


def counter_add(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` (dotted names group: ``fabric.fallback.no_rule``)."""
    try:
        d = _local.d
    except AttributeError:
        d = _table()
    d[name] = d.get(name, 0) + n


def stats(prefix: str = "") -> dict:
    """The counters whose names start with ``prefix`` (summed over threads), sorted by name."""
    with _register_lock:
        tables = list(_tables)
    out: dict = {}
    for d in tables:
        for k, v in d.copy().items():  # dict.copy is one C call: consistent under the GIL
            if k.startswith(prefix):
                out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def reset_stats(prefix: str = "") -> None:
    """Drop the counters whose names start with ``prefix`` (all of them by default)."""
    with _register_lock:
        tables = list(_tables)
    for d in tables:
        for k in [k for k in d.copy() if k.startswith(prefix)]:
            d.pop(k, None)
