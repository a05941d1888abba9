"""The deferred CUDA input checks' bookkeeping (``backend._defer`` / ``_send_batch`` / ``flush_checks``),
run on the CPU against a stand-in for CuPy whose copies complete only when the test says so. The real
device path runs in tests/cuda/test_fused.py (``test_deferred_checks_leave_in_batches_...``)."""
import sys
import types

import numpy as np
import pytest

from vibetensor.core import backend


class _Flag(np.ndarray):
    """A 0-d bool 'device array' on device ``device.id``."""

    @property
    def device(self):
        return types.SimpleNamespace(id=getattr(self, "_dev", 0))

    def get(self, out=None, blocking=True):
        _Fake.copies.append(blocking)
        if out is None:
            return np.asarray(self).copy()
        out[...] = np.asarray(self)
        return out


def flag(value, dev=0):
    f = np.array(bool(value)).view(_Flag)
    f._dev = dev
    return f


class _Event:
    def __init__(self, disable_timing=False):
        self.recorded = False

    def record(self):
        self.recorded = True
        _Fake.events.append(self)

    @property
    def done(self):
        return self in _Fake.completed

    def synchronize(self):
        if self not in _Fake.completed:  # a real wait: the copy had not finished
            _Fake.waits += 1
            _Fake.completed.add(self)


class _Device:
    def __init__(self, i):
        self.i = i

    def __enter__(self):
        _Fake.devices.append(self.i)

    def __exit__(self, *e):
        pass


class _Fake:
    events: list = []
    completed: set = set()
    copies: list = []
    devices: list = []
    waits = 0


@pytest.fixture
def fake_cupy(monkeypatch):
    _Fake.events, _Fake.completed, _Fake.copies, _Fake.devices, _Fake.waits = [], set(), [], [], 0
    cp = types.SimpleNamespace(
        stack=lambda fs: np.stack([np.asarray(f) for f in fs]).view(_Flag),
        cuda=types.SimpleNamespace(Event=_Event, Device=_Device))
    monkeypatch.setattr(backend, "_cupy", cp)
    monkeypatch.setitem(sys.modules, "cupyx", types.SimpleNamespace(empty_pinned=np.empty))
    monkeypatch.setattr(backend, "_pending", [])
    monkeypatch.setattr(backend, "_inflight", [])
    return cp


def _defer(value, name, dev=0):
    backend._defer((flag(value, dev), None, None, lambda: name))


def test_a_full_batch_leaves_by_an_asynchronous_copy_without_waiting(fake_cupy):
    for i in range(backend._BATCH - 1):
        _defer(False, f"flag {i}")
    assert len(backend._pending) == backend._BATCH - 1 and not backend._inflight
    _defer(False, "last")
    assert not backend._pending and len(backend._inflight) == 1
    assert _Fake.copies == [False] and _Fake.waits == 0  # non-blocking copy, nobody waited
    _Fake.completed.add(_Fake.events[0])
    for i in range(backend._BATCH):  # the next batch's send checks the completed one and drops it
        _defer(False, f"second {i}")
    assert len(backend._inflight) == 1 and backend._inflight[0][0] is _Fake.events[1] and _Fake.waits == 0
    backend.flush_checks()  # nothing bad: the flush waits for the last batch and raises nothing
    assert not backend._inflight and _Fake.waits == 1


def test_the_oldest_bad_flag_is_raised_once_and_everything_else_dropped(fake_cupy):
    for i in range(backend._BATCH):
        _defer(i in (5, 9), f"flag {i}")
    _defer(True, "pending and bad, but newer")
    with pytest.raises(IndexError, match="^flag 5$"):
        backend.flush_checks()
    assert not backend._pending and not backend._inflight
    backend.flush_checks()  # raised once: a later sync is clean


def test_a_completed_batch_raises_at_the_next_send(fake_cupy):
    for i in range(backend._BATCH):
        _defer(i == 7, f"flag {i}")
    _Fake.completed.add(_Fake.events[0])
    for i in range(backend._BATCH - 1):
        _defer(False, f"later {i}")
    with pytest.raises(IndexError, match="^flag 7$"):
        _defer(False, "the one that sends the second batch")


def test_batches_hold_one_device_each(fake_cupy):
    _defer(False, "a", dev=0)
    _defer(True, "b", dev=0)
    _defer(False, "c", dev=1)  # a device change sends device 0's flags first, stacked under its context
    assert _Fake.devices == [0] and len(backend._inflight) == 1 and len(backend._pending) == 1
    assert backend._pending[0][0].device.id == 1
    with pytest.raises(IndexError, match="^b$"):
        backend.flush_checks()


def test_a_device_far_behind_makes_the_host_wait_instead_of_piling_up(fake_cupy):
    for i in range(8 * backend._BATCH):
        _defer(False, f"flag {i}")
    assert len(backend._inflight) == 8 and _Fake.waits == 0
    for i in range(backend._BATCH):
        _defer(False, f"ninth {i}")
    assert not backend._inflight and _Fake.waits == 9  # the ninth batch waited for all of them
