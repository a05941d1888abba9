import pytest

import vibetensor.observe as obs
from vibetensor.observe import EventKind, collective


class CollectiveTimeout(RuntimeError):  # matched by class name, like vibetensor.collectives'
    pass


def test_begin_end_records_start_and_complete():
    tok = collective.begin("world", 4, "all_reduce", op="sum", dtype="float32", count=3, nbytes=12, peer=None,
                           device="cpu:0")
    s = collective.end(tok)
    start, done = obs.events()[-2:]
    assert start.kind is EventKind.COLLECTIVE_START and start.state == "started"
    assert done.seq == s and done.kind is EventKind.COLLECTIVE_COMPLETE and done.state == "completed"
    assert (done.group, done.coll_seq, done.op, done.dtype, done.count, done.nbytes, done.device) == \
        ("world", 4, "sum", "float32", 3, 12, "cpu:0")
    assert done.duration_ns >= done.ts_ns - start.ts_ns >= 0


def test_end_states_and_overrides():
    collective.end(collective.begin("g", 0, "barrier"), "timeout", missing_ranks=(2,))
    e = obs.events()[-1]
    assert e.kind is EventKind.COLLECTIVE_TIMEOUT and e.extra["missing_ranks"] == (2,)
    collective.end(collective.begin("g", 1, "barrier"), "error", error="boom")
    assert obs.events()[-1].kind is EventKind.COLLECTIVE_ERROR
    with pytest.raises(ValueError, match="completed, timeout, error"):
        collective.end(collective.begin("g", 2, "barrier"), "done")
    assert collective.enqueue("g", 3, "all_gather") == obs.latest_seq()
    assert obs.events()[-1].kind is EventKind.COLLECTIVE_ENQUEUE


def test_context_manager_classifies_exceptions():
    with pytest.raises(CollectiveTimeout):
        with collective.collective("world", 0, "all_reduce"):
            raise CollectiveTimeout("rank 2 missing")
    assert obs.events()[-1].kind is EventKind.COLLECTIVE_TIMEOUT
    assert "rank 2 missing" in obs.events()[-1].extra["error"]
    with pytest.raises(OSError):
        with collective.collective("world", 1, "all_reduce"):
            raise OSError("link down")
    assert obs.events()[-1].kind is EventKind.COLLECTIVE_ERROR
    with collective.collective("world", 2, "all_reduce"):
        pass
    assert obs.events()[-1].kind is EventKind.COLLECTIVE_COMPLETE


def test_off_mode_is_a_no_op():
    obs.set_mode("off")
    tok = collective.begin("world", 0, "all_reduce")
    assert tok is None and collective.end(tok) == -1 and collective.enqueue("world", 0, "x") == -1
    assert obs.events() == []


def test_group_objects_use_their_name():
    class PG:
        name = "tp0"
    collective.end(collective.begin(PG(), 0, "all_reduce"))
    assert obs.events()[-1].group == "tp0"
