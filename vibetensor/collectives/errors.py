"""Collective errors: each names the group, the collective's sequence number and what to fix."""
from __future__ import annotations

from ..errors import VibeTensorError


class CollectiveError(VibeTensorError, RuntimeError):
    """A collective failed (bad arguments, a broken group, a transport error)."""


class CollectiveTimeout(VibeTensorError, TimeoutError):
    """A collective did not complete within its timeout.

    Attributes: ``group`` (name), ``seq`` (the collective's sequence number in that group), ``op``,
    ``missing`` (group ranks that never reached it, as far as the side channel could tell),
    ``last_seen`` ({rank: last collective sequence number it reported}), ``timeout`` (seconds).
    """

    def __init__(self, msg, *, group=None, seq=None, op=None, missing=(), last_seen=None, timeout=None):
        super().__init__(msg)
        self.group = group
        self.seq = seq
        self.op = op
        self.missing = tuple(missing)
        self.last_seen = dict(last_seen or {})
        self.timeout = timeout


class CollectiveMismatchError(CollectiveError):
    """VT_DEBUG_COLLECTIVES=1 found ranks calling different collectives (op, shape, dtype, root)."""


class GroupBrokenError(CollectiveError):
    """A group whose earlier collective timed out or failed; its communicator is in an unknown state."""
