import dataclasses
import json

import pytest

import vibetensor.observe as obs
from vibetensor.observe import collective
from vibetensor.observe.analyze import analyze, Report
from tests.observe.synth import fresh_process, run_rank, four_ranks_rank2_skips_5

OK = ("all_reduce", "float32", 1024, "completed")


def test_rank_that_never_joined_is_named(tmp_path):
    four_ranks_rank2_skips_5(tmp_path)
    rep = analyze([str(tmp_path)])
    assert isinstance(rep, Report) and not rep.consistent
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.consistent = True
    g = rep.group("world")
    assert g.divergence == 5 and g.divergence_name == "all_reduce"
    assert g.never_joined == (2,) and g.reached == (0, 1, 3) and g.timed_out == (0, 1, 3)
    assert {lc.rank: lc.coll_seq for lc in g.last_completed} == {0: 4, 1: 4, 2: 4, 3: 4}
    text = rep.text()
    assert ("group world: ranks 0,1,3 reached all_reduce #5 and timed out waiting in it; rank 2 never joined it "
            "(its last completed collective was #4 all_reduce)") in text
    json.dumps(rep.to_dict())


def test_consistent_dumps(tmp_path):
    for r in range(3):
        run_rank(r, 3, [OK] * 4, tmp_path)
    rep = analyze(str(tmp_path))
    assert rep.consistent and rep.group("world").divergence is None
    assert "consistent" in rep.text() and "ranks 0-2 agree" in rep.text()


def test_mismatched_dtype_and_count(tmp_path):
    for r in range(4):
        ops = [OK] * 3 + [("all_reduce", "float16" if r == 1 else "float32", 512 if r == 3 else 1024, "timeout")]
        run_rank(r, 4, ops, tmp_path)
    rep = analyze(str(tmp_path))
    g = rep.group("world")
    assert not rep.consistent and g.divergence == 3
    fields = {m.field: m for m in g.mismatches}
    assert set(fields) == {"dtype", "count"}
    assert fields["dtype"].values == (("float32", (0, 2, 3)), ("float16", (1,)))
    assert fields["count"].values == ((1024, (0, 1, 2)), (512, (3,)))
    assert "ranks disagree at #3 on the dtype: float32 on ranks 0,2,3; float16 on rank 1" in rep.text()


def test_different_collective_at_same_seq(tmp_path):
    for r in range(2):
        ops = [OK, ("barrier" if r == 1 else "all_reduce", "float32", 1024, "started")]
        run_rank(r, 2, ops, tmp_path)
    g = analyze(str(tmp_path)).group("world")
    assert g.divergence == 1 and [m.field for m in g.mismatches] == ["name"]


def test_joined_but_not_completed(tmp_path):
    for r in range(3):
        run_rank(r, 3, [OK, ("all_reduce", "float32", 1024, "started" if r == 0 else "completed")], tmp_path)
    rep = analyze(str(tmp_path))
    g = rep.group("world")
    assert g.divergence == 1 and g.not_completed == ((0, "started"),) and g.never_joined == ()
    assert "rank 0 joined it but never completed it (still inside it when dumped)" in rep.text()


def test_missing_dump_and_wrapped_ring(tmp_path):
    run_rank(0, 3, [OK] * 3, tmp_path)
    obs.set_capacity(4)  # rank 1's ring keeps only its last two collectives
    run_rank(1, 3, [OK] * 3, tmp_path)
    rep = analyze(str(tmp_path))
    assert rep.missing_ranks == (2,) and not rep.consistent
    g = rep.group("world")
    assert g.divergence is None and g.no_dump == (2,)  # rank 1's lost #0 is unknown, not "never joined"
    assert "no dump from rank 2" in rep.text()


def test_subgroup_membership_from_ranks_hint():
    dumps = []
    for r in range(4):
        fresh_process(r, 4)
        if r in (0, 1):
            collective.end(collective.begin("world", 0, "barrier"))
        if r in (0, 1, 2):  # tp = ranks 0,1,2 but rank 2 never calls into it
            for s in range(2 if r != 2 else 0):
                collective.end(collective.begin("tp", s, "all_reduce", ranks=(0, 1, 2)), "completed")
        if r in (2, 3):
            collective.end(collective.begin("world", 0, "barrier"))
        dumps.append(obs.snapshot())
    rep = analyze(dumps)
    tp = rep.group("tp")
    assert tp.ranks == (0, 1, 2) and tp.divergence == 0 and tp.never_joined == (2,)
    assert rep.group("world").divergence is None
    assert [g.group for g in rep.groups] == ["world", "tp"]


def test_bad_dump_data_is_a_clear_error():
    with pytest.raises(ValueError, match="integer 'rank'"):
        analyze([{"events": []}])
    with pytest.raises(ValueError, match="two dumps for rank 0"):
        analyze([{"rank": 0, "events": []}, {"rank": 0, "events": []}])


def test_rank_that_skipped_and_called_the_next_collective(tmp_path):
    for r in range(3):
        ops = [OK] * 2 + ([("all_reduce", "float32", 1024, "timeout")] if r != 1 else []) + \
              [("barrier", None, 0, "timeout")]
        run_rank(r, 3, [(n, d or "float32", c, s) for n, d, c, s in ops], tmp_path)
    rep = analyze(str(tmp_path))
    g = rep.group("world")
    assert g.divergence == 2 and g.reached == (0, 2) and g.never_joined == (1,)
    assert ("ranks 0,2 reached all_reduce #2 and timed out waiting in it; rank 1 never joined it (it issued "
            "barrier as #2 instead, which timed out: a skipped or reordered collective; its last completed "
            "collective was #1 all_reduce)") in rep.text()


def test_p2p_ops_stay_off_the_collective_sequence(tmp_path):
    # p2p ops carry their own counter in coll_seq: #1 send must not be compared with #1 all_reduce.
    for r in range(2):
        fresh_process(r, 2)
        for s in range(3):
            collective.end(collective.begin("world", s, "all_reduce", dtype="float32", count=4))
        tok = collective.begin("world", 1, "send" if r == 0 else "recv", dtype="float32", count=4, peer=1 - r)
        collective.end(tok, "timeout" if r == 0 else "completed")
        obs.dump("t", str(tmp_path))
    rep = analyze(str(tmp_path))
    g = rep.group("world")
    assert g.divergence is None and g.mismatches == ()
    assert [(p.rank, p.name, p.peer, p.state) for p in rep.p2p] == [(0, "send", 1, "timeout")]
    assert not rep.consistent
    assert "p2p: rank 0 send to rank 1 (group world, p2p #1) timed out" in rep.text()


def test_no_majority_names_no_culprit(tmp_path):
    for r in range(2):
        run_rank(r, 2, [OK, ("barrier" if r else "all_reduce", "float32", 1024, "completed")], tmp_path)
    rep = analyze(str(tmp_path))
    g = rep.group("world")
    assert g.divergence == 1 and g.divergence_name is None and g.never_joined == ()
    assert "none has a majority" in rep.text() and not rep.consistent
