"""Stats counters beside the event ring: named integer counters, per-key breakdowns.

Counters are per-thread-safe without a global lock on the hot path: ``collections.Counter``
updates of one key are atomic enough under the GIL for monotonic statistics.
"""
from __future__ import annotations

from collections import defaultdict

_counters: dict = defaultdict(int)


def counter_add(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` (dotted names group: ``fabric.fallback.no_rule``)."""
    _counters[name] += n


def stats(prefix: str = "") -> dict:
    """A copy of the counters whose names start with ``prefix``."""
    return {k: v for k, v in list(_counters.items()) if k.startswith(prefix)}


def reset_stats(prefix: str = "") -> None:
    for k in [k for k in list(_counters) if k.startswith(prefix)]:
        del _counters[k]
