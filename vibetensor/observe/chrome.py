"""Chrome Trace Event Format (opens in Perfetto and chrome://tracing) from snapshots or dumps.

One process per rank (pid = rank, named "rank R (host, pid P)"), one track per Python thread and
one track per process group for collectives. Collectives become complete "X" slices from start
to complete/timeout/error (a collective still in flight at dump time runs to the dump's time);
spans become "X" (or an open "B" when the end is not recorded yet); marks and other events
without a duration are instant "i" events. Times are microseconds from the earliest event over
all ranks, on the wall clock, so dumps from several ranks line up.
"""
from __future__ import annotations

import json
import os
import tempfile

from .collective import is_p2p

_COLL = "collective_"
_END_KINDS = {"collective_complete": "completed", "collective_timeout": "timeout",
              "collective_error": "error"}
_ARG_KEYS = (("group", "group"), ("coll_seq", "coll_seq"), ("op", "op"), ("dtype", "dtype"),
             ("count", "count"), ("nbytes", "bytes"), ("peer", "peer"), ("device", "device"),
             ("state", "state"), ("duration_ns", "duration_ns"))
_GROUP_TID0 = 1_000_000  # group tracks sort after the thread tracks


_COLL_ARGS = ("group", "coll_seq", "op", "dtype", "count", "bytes", "peer")


def _args(e: dict) -> dict:
    a = {out: e[k] for k, out in _ARG_KEYS if e.get(k) is not None}
    if e["kind"].startswith(_COLL):  # a collective slice always shows these (null where not applicable)
        a = {**dict.fromkeys(_COLL_ARGS), **a}
    a["seq"] = e["seq"]
    a.update(e.get("extra") or {})
    if e.get("stack"):
        a["stack"] = e["stack"]
    return a


def _wall(e: dict) -> int:
    return e.get("ts_wall_ns", e.get("ts_ns", 0))


def _process(dump: dict, origin: int) -> list[dict]:
    rank = dump.get("rank")
    pid = rank if isinstance(rank, int) else dump.get("pid", 0)
    us = lambda ns: round((ns - origin) / 1000.0, 3)  # noqa: E731
    host = dump.get("hostname", "?")
    out = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0, "cat": "__metadata",
         "args": {"name": f"rank {rank} ({host}, pid {dump.get('pid')})"}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": 0, "cat": "__metadata",
         "args": {"sort_index": pid}},
        {"ph": "M", "name": "process_labels", "pid": pid, "tid": 0, "ts": 0, "cat": "__metadata",
         "args": {"labels": f"rank {rank}" + (f", dump: {dump['reason']}" if dump.get("reason") else "")}},
    ]
    names = dump.get("thread_names") or {}
    tids: dict = {}

    def tid_of(ident) -> int:
        if ident not in tids:
            tids[ident] = len(tids) + 1
            out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tids[ident], "ts": 0,
                        "cat": "__metadata", "args": {"name": names.get(str(ident), f"thread {ident}")}})
        return tids[ident]

    gtids: dict = {}

    def group_tid(group, lane: int = 0) -> int:
        if (group, lane) not in gtids:
            gtids[(group, lane)] = _GROUP_TID0 + len(gtids)
            label = f"collectives: {group}" + (f" (concurrent {lane})" if lane else "")
            out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": gtids[(group, lane)], "ts": 0,
                        "cat": "__metadata", "args": {"name": label}})
        return gtids[(group, lane)]

    coll_x: list = []  # collective slices; laid out on lanes at the end so overlapping ones never share one

    evs = sorted(dump.get("events", []), key=lambda e: e["seq"])
    end_of_trace = dump.get("wall_time_ns") or (max(map(_wall, evs)) if evs else origin)
    starts: dict = {}   # (group, coll_seq) -> start event
    open_spans: dict = {}  # (tid, name) -> [begin events]
    for e in evs:
        kind, t = e["kind"], _wall(e)
        base = {"pid": pid, "name": e.get("name") or kind, "cat": kind}
        if kind.startswith(_COLL):
            track = ("p2p: group " if is_p2p(e) else "group ") + str(e.get("group"))
            key = (track, e.get("coll_seq"))
            gt = group_tid(track)
            if kind == "collective_start":
                starts[key] = e
            elif kind in _END_KINDS:
                s = starts.pop(key, None)
                dur = e.get("duration_ns")
                t0 = _wall(s) if s is not None else (t - dur if dur is not None else t)
                args = _args(s or e)
                args.update(_args(e))
                args["state"] = _END_KINDS[kind]
                coll_x.append({**base, "cat": "collective", "ph": "X", "tid": track, "ts": us(t0),
                               "dur": round(max(0, t - t0) / 1000.0, 3), "args": args})
                if kind != "collective_complete":
                    out.append({**base, "name": f"{_END_KINDS[kind]}: {base['name']} #{e.get('coll_seq')}",
                                "ph": "i", "s": "p", "tid": gt, "ts": us(t), "args": _args(e)})
            else:  # enqueue: an instant on the group track
                out.append({**base, "name": f"enqueue {base['name']}", "ph": "i", "s": "t", "tid": gt,
                            "ts": us(t), "args": _args(e)})
            continue
        tid = tid_of(e.get("tid", 0))
        if kind == "span_begin":
            open_spans.setdefault((tid, e.get("name")), []).append(e)
        elif kind == "span_end":
            stack = open_spans.get((tid, e.get("name")))
            b = stack.pop() if stack else None
            dur = e.get("duration_ns")
            t0 = _wall(b) if b is not None else (t - dur if dur is not None else t)
            out.append({**base, "cat": "span", "ph": "X", "tid": tid, "ts": us(t0),
                        "dur": round(max(0, t - t0) / 1000.0, 3), "args": _args(e)})
        elif e.get("duration_ns") is not None:  # e.g. a fabric copy recorded when it finished
            d = e["duration_ns"]
            out.append({**base, "ph": "X", "tid": tid, "ts": us(t - d), "dur": round(d / 1000.0, 3),
                        "args": _args(e)})
        else:  # marks, alloc/free/oom, fallbacks
            out.append({**base, "ph": "i", "s": "t", "tid": tid, "ts": us(t), "args": _args(e)})
    # Collectives that started but did not finish before the dump: the slices a hang shows.
    for key, s in starts.items():
        args = _args(s)
        args["state"] = "in flight at dump (never completed)"
        t0 = _wall(s)
        coll_x.append({"pid": pid, "name": s.get("name") or s["kind"], "cat": "collective", "ph": "X",
                       "tid": key[0], "ts": us(t0), "dur": round(max(0, end_of_trace - t0) / 1000.0, 3),
                       "args": args})
    # Async collectives of one group can overlap; slices on one track must nest, so each goes on the
    # first lane of its group that is free by its start time.
    lane_ends: dict = {}
    for x in sorted(coll_x, key=lambda x: (x["ts"], -x["dur"])):
        ends = lane_ends.setdefault(x["tid"], [])
        lane = next((i for i, end in enumerate(ends) if end <= x["ts"]), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = x["ts"] + x["dur"]
        x["tid"] = group_tid(x["tid"], lane)
        out.append(x)
    for (tid, _), stack in open_spans.items():
        for b in stack:
            out.append({"pid": pid, "name": b.get("name") or "span", "cat": "span", "ph": "B", "tid": tid,
                        "ts": us(_wall(b)), "args": _args(b)})
    return out


def chrome_trace(dumps: list[dict]) -> dict:
    """A Trace Event Format object for one or more snapshots/dumps (one process per rank)."""
    walls = [_wall(e) for d in dumps for e in d.get("events", [])]
    origin = min(walls) if walls else min((d.get("wall_time_ns", 0) for d in dumps), default=0)
    trace = []
    for d in dumps:
        trace.extend(_process(d, origin))
    meta = [e for e in trace if e["ph"] == "M"]
    rest = sorted((e for e in trace if e["ph"] != "M"), key=lambda e: (e["pid"], e["ts"]))
    return {
        "traceEvents": meta + rest,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "vibetensor.observe",
            "origin_wall_time_ns": origin,
            "ranks": [d.get("rank") for d in dumps],
            "reasons": {str(d.get("rank")): d.get("reason") for d in dumps if d.get("reason")},
        },
    }


def write_json_atomic(obj, path: str) -> str:
    """Write ``obj`` as JSON to ``path`` via a temp file + rename; returns the path."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".vt_trace_", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def export_chrome_trace(path: str) -> str:
    """Write this process's ring as a Chrome trace (open it at ui.perfetto.dev); returns the path."""
    from .capture import snapshot
    return write_json_atomic(chrome_trace([snapshot()]), path)
