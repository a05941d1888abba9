"""Failure handling under MPI: timeouts naming the missing rank, a raising rank, debug fingerprints.

Each test uses a fresh group (a timed-out group is unusable) and resynchronises on the world group."""
import time

import numpy as np
import pytest

import vibetensor as vt

dist = vt.collectives
pytestmark = pytest.mark.mpi
SHORT = 1.5


def _resync(world):
    dist.barrier(timeout=30)


def test_skipped_collective_names_missing_rank(world):
    g = dist.new_group(list(range(world.size())), timeout=SHORT)
    r = world.rank()
    dist.all_reduce(vt.ones(3), group=g)  # collective #1 works
    if r == 1:
        time.sleep(SHORT + 1.0)  # rank 1 skips collective #2
    else:
        t0 = time.monotonic()
        with pytest.raises(dist.CollectiveTimeout) as ei:
            dist.all_reduce(vt.ones(1000), group=g)
        took = time.monotonic() - t0
        e = ei.value
        assert SHORT <= took < SHORT + 3.0, took
        assert e.missing == (1,) and e.seq == 2 and e.group == g.name and e.op == "all_reduce"
        assert "ranks [1] did not join" in str(e) and "#2" in str(e) and g.name in str(e)
        if hasattr(vt.observe, "dump"):
            assert "Event ring dumped" in str(e)
        assert isinstance(e, TimeoutError) and isinstance(e, vt.errors.VibeTensorError)
        with pytest.raises(dist.GroupBrokenError, match="timed out"):
            dist.all_reduce(vt.ones(3), group=g)
    _resync(world)


def test_ring_over_shm_times_out_naming_missing_rank(world):
    g = dist.new_group(list(range(world.size())), timeout=SHORT)
    r = world.rank()
    dist.all_reduce(vt.ones(1 << 20), group=g, algorithm="ring")  # #1 works (sets up the shm transport)
    if r == 1:
        time.sleep(SHORT + 1.0)  # rank 1 skips ring collective #2
    else:
        with pytest.raises(dist.CollectiveTimeout) as ei:
            dist.all_reduce(vt.ones(1 << 20), group=g, algorithm="ring")
        assert ei.value.missing == (1,) and ei.value.seq == 2
        tr = g._shm
        assert tr is None or not tr.requested  # buffers offered to peers for pushes are kept alive
        with pytest.raises(dist.GroupBrokenError):
            dist.all_reduce(vt.ones(3), group=g, algorithm="ring")
    _resync(world)


def test_rank_raising_before_collective_fails_others_within_timeout(world):
    g = dist.new_group(list(range(world.size())))
    r = world.rank()
    t0 = time.monotonic()
    if r == world.size() - 1:
        with pytest.raises(ZeroDivisionError):
            x = 1 / 0  # the "bug" on this rank, before its all_reduce
            dist.all_reduce(vt.ones(4) * x, group=g)
        time.sleep(SHORT + 1.0)
    else:
        with pytest.raises(dist.CollectiveTimeout) as ei:
            dist.all_reduce(vt.ones(4), group=g, timeout=SHORT)  # per-call override
        assert time.monotonic() - t0 < SHORT + 3.0
        assert ei.value.missing == (world.size() - 1,)
    _resync(world)


def test_async_timeout_surfaces_in_wait(world):
    g = dist.new_group(list(range(world.size())), timeout=SHORT)
    if world.rank() == 0:
        time.sleep(SHORT + 1.0)
    else:
        w = dist.all_reduce(vt.ones(8), group=g, async_op=True)
        with pytest.raises(dist.CollectiveTimeout) as ei:
            w.wait()
        assert 0 in ei.value.missing and w.is_completed() and not w.is_success()
    _resync(world)


def test_recv_timeout_names_peer(world):
    r = world.rank()
    if r == 0:
        with pytest.raises(dist.CollectiveTimeout, match="peer 1 never posted"):
            dist.recv(vt.zeros(3), src=1, tag=77, timeout=0.5)
    _resync(world)


def test_debug_fingerprint_mismatch(world, monkeypatch):
    from vibetensor import _env
    monkeypatch.setenv("VT_DEBUG_COLLECTIVES", "1")
    _env.reload()
    try:
        g = dist.new_group(list(range(world.size())), timeout=10)
        t = vt.ones(6)
        dist.all_reduce(t, group=g)  # matching calls pass the check
        np.testing.assert_allclose(t.numpy(), world.size())
        bad = vt.ones(7 if world.rank() == 1 else 6, dtype=vt.float64 if world.rank() == 1 else vt.float32)
        with pytest.raises(dist.CollectiveMismatchError) as ei:
            dist.all_reduce(bad, group=g)
        msg = str(ei.value)
        assert "ranks [1]" in msg and "shape=(7,)" in msg and "dtype=float64" in msg and "shape=(6,)" in msg
        with pytest.raises(dist.CollectiveMismatchError, match="ranks \\[1\\]"):
            dist.broadcast(vt.ones(2), src=1 if world.rank() == 1 else 0, group=g)
    finally:
        monkeypatch.delenv("VT_DEBUG_COLLECTIVES")
        _env.reload()
    _resync(world)
