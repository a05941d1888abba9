import dataclasses
import json
import threading
import sys
import time

import pytest

import vibetensor as vt
import vibetensor.observe as obs
from vibetensor.observe import Event, EventKind, Mode, record, events, latest_seq


def test_ring_order_and_wraparound():
    obs.set_capacity(8)
    first = record(EventKind.MARK, "m0")
    seqs = [first] + [record(EventKind.MARK, f"m{i}") for i in range(1, 20)]
    assert seqs == list(range(first, first + 20))
    evs = events()
    assert [e.seq for e in evs] == seqs[-8:]  # only the newest `capacity` survive, oldest first
    assert [e.name for e in evs] == [f"m{i}" for i in range(12, 20)]
    assert latest_seq() == seqs[-1]
    ts = [e.ts_ns for e in evs]
    assert ts == sorted(ts)


def test_min_seq_and_max_events():
    seqs = [obs.mark(f"m{i}") for i in range(10)]
    assert [e.seq for e in events(min_seq=seqs[4])] == seqs[4:]
    assert [e.seq for e in events(min_seq=seqs[2], max_events=3)] == seqs[2:5]
    assert events(min_seq=seqs[-1] + 1) == []
    assert events(max_events=0) == []
    with pytest.raises(ValueError, match="max_events"):
        events(max_events=-1)


def test_events_are_frozen_typed_and_carry_fields():
    s = record("collective_start", "all_reduce", group="world", coll_seq=3, op="sum", dtype="float32",
               count=10, nbytes=40, peer=None, device="cpu:0", state="started", flavour="x")
    (e,) = events(min_seq=s)
    assert isinstance(e, Event) and e.kind is EventKind.COLLECTIVE_START
    assert (e.group, e.coll_seq, e.op, e.dtype, e.count, e.nbytes, e.device) == \
        ("world", 3, "sum", "float32", 10, 40, "cpu:0")
    assert e.extra == {"flavour": "x"}
    assert abs(e.ts_wall_ns - time.time_ns()) < 60e9
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.seq = 5
    assert Event.from_dict(json.loads(json.dumps(e.to_dict()))) == e
    with pytest.raises(ValueError):
        record("not_a_kind", "x")


def test_reserved_field_names_go_to_extra():
    s = record(EventKind.MARK, "m", rank=99, pid=1)
    (e,) = events(min_seq=s)
    assert e.rank != 99 and e.extra == {"rank": 99, "pid": 1}


def test_off_records_nothing():
    obs.set_mode("off")
    assert not obs.enabled() and obs.mode() is Mode.OFF
    before = latest_seq()
    assert record(EventKind.MARK, "x") == -1 and obs.mark("y") == -1
    with obs.span("z") as s:
        assert s == -1
    assert events() == [] and latest_seq() == before


def test_basic_has_no_stack_full_has_stack():
    obs.set_mode("basic")
    (e,) = events(min_seq=obs.mark("b"))
    assert e.stack is None

    def my_caller_function():
        return obs.mark("f")

    obs.set_mode(Mode.FULL)
    (e,) = events(min_seq=my_caller_function())
    assert "my_caller_function" in e.stack and "test_basic_has_no_stack_full_has_stack" in e.stack
    assert "observe/events.py" not in e.stack  # the recorder's own frames are skipped
    with pytest.raises(ValueError, match="off, basic, full"):
        obs.set_mode("verbose")


def test_span_and_decorator():
    with obs.span("fwd", step=1) as b:
        pass
    evs = events(min_seq=b)
    assert [e.kind for e in evs] == [EventKind.SPAN_BEGIN, EventKind.SPAN_END]
    assert evs[1].duration_ns >= 0 and evs[1].extra == {"step": 1}

    @obs.span("decorated")
    def f(x):
        return x + 1

    s = latest_seq()
    assert f(1) == 2
    assert [e.name for e in events(min_seq=s + 1)] == ["decorated", "decorated"]
    with pytest.raises(KeyError):
        with obs.span("raises"):
            raise KeyError("boom")
    assert events()[-1].kind is EventKind.SPAN_END and events()[-1].name == "raises"


def test_wait_for_event_seq_times_out_and_wakes():
    nxt = latest_seq() + 1
    t0 = time.monotonic()
    assert obs.wait_for_event_seq(nxt, timeout_ms=50) is False
    assert time.monotonic() - t0 >= 0.045
    assert obs.wait_for_event_seq(nxt - 1, timeout_ms=0) is (nxt - 1 >= 0)

    t = threading.Timer(0.05, lambda: obs.mark("from another thread"))
    t.start()
    t0 = time.monotonic()
    assert obs.wait_for_event_seq(nxt, timeout_ms=5000) is True
    assert time.monotonic() - t0 < 4.0
    t.join()


def test_threads_lose_and_duplicate_nothing():
    n_threads, per = 8, 1500
    obs.set_capacity(n_threads * per + 10)  # no wrap: every event must still be there
    start = latest_seq() + 1
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force interleaving inside record()
    barrier = threading.Barrier(n_threads)

    def work(t):
        barrier.wait()
        for i in range(per):
            record(EventKind.MARK, "w", thread=t, i=i)

    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    evs = events(min_seq=start)
    assert [e.seq for e in evs] == list(range(start, start + n_threads * per))
    payload = sorted((e.extra["thread"], e.extra["i"]) for e in evs)
    assert payload == [(t, i) for t in range(n_threads) for i in range(per)]
    assert latest_seq() == start + n_threads * per - 1
    for t in range(n_threads):  # each thread's own events keep its program order
        mine = [e.extra["i"] for e in evs if e.extra["thread"] == t]
        assert mine == list(range(per))


def test_set_capacity_keeps_newest_and_validates():
    seqs = [obs.mark(str(i)) for i in range(10)]
    obs.set_capacity(4)
    assert [e.seq for e in events()] == seqs[-4:]
    with pytest.raises(ValueError, match="positive"):
        obs.set_capacity(0)
    obs.clear()
    assert events() == [] and latest_seq() == seqs[-1]  # sequence numbers are never reused
    assert obs.mark("after") == seqs[-1] + 1


def test_env_flags_are_read(monkeypatch):
    import subprocess
    code = ("import vibetensor.observe as o; print(o.mode().value, o.capacity()); "
            "o.mark('x'); print(len(o.events()))")
    env = {**__import__("os").environ, "VT_EVENTS": "off", "VT_EVENTS_CAPACITY": "17"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["off", "17", "0"]


def test_reachable_as_vt_observe():
    assert vt.observe.record is record
