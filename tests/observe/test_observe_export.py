import json

import vibetensor.observe as obs
from vibetensor.observe import collective
from vibetensor.observe.chrome import chrome_trace


def _slices(trace, **match):
    return [e for e in trace["traceEvents"] if all(e.get(k) == v for k, v in match.items())]


def test_snapshot_is_json_serialisable():
    obs.set_rank(3, 4)
    obs.set_mode("full")
    obs.mark("m", obj=object(), tup=(1, 2))  # odd extras become repr / lists
    obs.counter_add("t_export.snap")
    snap = json.loads(json.dumps(obs.snapshot(include_stacks=True)))
    assert snap["rank"] == 3 and snap["world_size"] == 4 and snap["mode"] == "full"
    assert snap["events"][-1]["name"] == "m" and snap["events"][-1]["extra"]["tup"] == [1, 2]
    assert snap["events"][-1]["stack"]
    assert snap["stats"]["t_export.snap"] >= 1
    assert any("test_snapshot_is_json_serialisable" in t["stack"] for t in snap["threads"])


def test_chrome_trace_file_is_valid(tmp_path):
    obs.set_rank(1, 2)
    with obs.span("step"):
        tok = collective.begin("world", 7, "all_reduce", op="sum", dtype="float32", count=256, nbytes=1024,
                               peer=None, device="cpu:0")
        collective.end(tok)
        obs.mark("checkpoint")
        tok = collective.begin("tp", 0, "broadcast", dtype="float16", count=8, nbytes=16, peer=0)
        collective.end(tok, "timeout")
    collective.begin("world", 8, "all_gather", dtype="int64", count=4, nbytes=32)  # never ends
    path = obs.export_chrome_trace(str(tmp_path / "t.json"))
    trace = json.load(open(path))
    evs = trace["traceEvents"]
    assert evs and all({"ph", "ts", "pid", "tid", "name", "cat", "args"} <= set(e) for e in evs)
    assert all(e["pid"] == 1 for e in evs)
    assert all(isinstance(e["ts"], (int, float)) and e["ts"] >= 0 for e in evs)
    meta = {(e["name"], e["args"].get("name")) for e in evs if e["ph"] == "M"}
    assert ("process_name", "rank 1 (%s, pid %d)" % (obs.snapshot()["hostname"], obs.snapshot()["pid"])) in meta
    assert ("thread_name", "collectives: group world") in meta and ("thread_name", "collectives: group tp") in meta

    (ar,) = _slices(trace, name="all_reduce", ph="X")
    assert ar["cat"] == "collective" and ar["dur"] >= 0
    assert {k: ar["args"][k] for k in ("group", "coll_seq", "op", "dtype", "count", "bytes", "state")} == \
        {"group": "world", "coll_seq": 7, "op": "sum", "dtype": "float32", "count": 256, "bytes": 1024,
         "state": "completed"}
    assert ar["args"]["peer"] is None  # always present on collective slices
    (bc,) = _slices(trace, name="broadcast", ph="X")
    assert bc["args"]["state"] == "timeout" and bc["args"]["peer"] == 0
    assert _slices(trace, name="timeout: broadcast #0", ph="i")
    (ag,) = _slices(trace, name="all_gather", ph="X")
    assert "never completed" in ag["args"]["state"]
    (step,) = _slices(trace, name="step", ph="X")
    assert step["ts"] <= ar["ts"] and ar["ts"] + ar["dur"] <= step["ts"] + step["dur"] + 1e-3
    (mk,) = _slices(trace, name="checkpoint")
    assert mk["ph"] == "i" and step["ts"] <= mk["ts"] <= step["ts"] + step["dur"]
    assert ar["tid"] != step["tid"]  # collectives get their own track per group
    _assert_slices_nest(trace)


def test_unfinished_span_is_open_begin_and_lost_begin_uses_duration():
    obs.set_capacity(3)
    with obs.span("outer"):
        obs.mark("a")
        obs.mark("b")
        obs.mark("c")  # the ring (3) now lost outer's begin
    snap = obs.snapshot()
    trace = chrome_trace([snap])
    (outer,) = _slices(trace, name="outer")
    assert outer["ph"] == "X" and outer["dur"] > 0
    obs.set_capacity(10)
    cm = obs.span("open")
    cm.__enter__()
    trace = chrome_trace([obs.snapshot()])
    (op,) = _slices(trace, name="open")
    assert op["ph"] == "B"
    cm.__exit__(None, None, None)


def test_merge_aligns_ranks_on_wall_clock():
    dumps = []
    for r in range(2):
        obs.clear()
        obs.set_rank(r, 2)
        obs.mark(f"hello from {r}")
        dumps.append(obs.snapshot())
    trace = chrome_trace(dumps)
    marks = {e["pid"]: e for e in trace["traceEvents"] if e["ph"] == "i"}
    assert set(marks) == {0, 1}
    w0, w1 = (dumps[r]["events"][0]["ts_wall_ns"] for r in range(2))
    assert abs((marks[1]["ts"] - marks[0]["ts"]) - (w1 - w0) / 1000.0) < 0.01
    assert min(e["ts"] for e in trace["traceEvents"] if e["ph"] != "M") == 0


def _assert_slices_nest(trace):
    by_track = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            by_track.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for sl in by_track.values():
        sl.sort(key=lambda x: (x[0], -x[1]))
        stack = []
        for a, b in sl:
            while stack and stack[-1] <= a:
                stack.pop()
            assert not stack or b <= stack[-1] + 1e-3, f"slice {a}..{b} partially overlaps its parent"
            stack.append(b)


def test_overlapping_async_collectives_get_separate_lanes():
    import time
    t0 = collective.begin("world", 0, "all_reduce")
    time.sleep(0.001)
    t1 = collective.begin("world", 1, "all_gather")
    time.sleep(0.001)
    collective.end(t0)
    time.sleep(0.001)
    collective.end(t1)
    tok = collective.begin("world", 2, "barrier")  # after both: back on the first lane
    collective.end(tok)
    trace = chrome_trace([obs.snapshot()])
    x = {e["name"]: e for e in trace["traceEvents"] if e["ph"] == "X"}
    assert x["all_reduce"]["tid"] != x["all_gather"]["tid"]
    assert x["barrier"]["tid"] == x["all_reduce"]["tid"]
    lanes = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert {"collectives: group world", "collectives: group world (concurrent 1)"} <= lanes
    _assert_slices_nest(trace)


def test_p2p_ops_get_their_own_track():
    collective.end(collective.begin("world", 0, "all_reduce"))
    collective.end(collective.begin("world", 0, "send", peer=1))  # same coll_seq, separate counter
    trace = chrome_trace([obs.snapshot()])
    x = {e["name"]: e for e in trace["traceEvents"] if e["ph"] == "X"}
    assert x["all_reduce"]["tid"] != x["send"]["tid"] and x["send"]["args"]["peer"] == 1
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert "collectives: p2p: group world" in names
