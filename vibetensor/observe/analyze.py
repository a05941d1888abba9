"""Hang diagnosis over every rank's dump: who reached which collective, who never joined it.

    report = analyze(dumps)          # dumps: list of dump dicts, or directories / dump files
    print(report.text()); report.consistent

Per process group it finds the last collective each rank completed, the first collective
sequence number where the ranks diverge (a rank never joined it, joined but never completed it,
timed out, or ranks disagree on its op / reduce op / dtype / element count / root), and says so in
plain words. ``coll_seq`` is each rank's own count of collectives on the group, so a rank that
skipped a call shows up either as "never joined #N" or as a different op at #N.

A rank whose ring wrapped (or was cleared) no longer holds its oldest collectives; sequence
numbers below its oldest retained one count as unknown for it, never as "missing".
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from .collective import is_p2p

_STATE_OF_KIND = {"collective_enqueue": "enqueued", "collective_start": "started",
                  "collective_complete": "completed", "collective_timeout": "timeout",
                  "collective_error": "error"}
_STATE_RANK = {"enqueued": 0, "started": 1, "completed": 2, "timeout": 3, "error": 3}
_JOINED = frozenset(_STATE_RANK)
_WORLD_NAMES = frozenset({"world", "default", "WORLD", "default_pg"})
_ROOTED = frozenset({"broadcast", "reduce", "scatter", "gather"})
_UNEVEN = frozenset({"send", "recv", "isend", "irecv", "all_to_all", "all_to_all_single", "alltoall", "gather",
                     "scatter"})  # element counts legitimately differ across ranks
_FIELD_WORDS = {"name": "collective", "op": "reduce op", "dtype": "dtype",
                "count": "element count (shape)", "peer": "root rank"}
_STATE_WORDS = {"enqueued": "which was still queued", "started": "which was still in progress",
                "completed": "which completed", "timeout": "which timed out", "error": "which failed"}
_NOT_DONE_WORDS = {"enqueued": "it was still queued when dumped", "started": "still inside it when dumped",
                   "timeout": "timed out in it", "error": "failed in it with an error"}


@dataclass(frozen=True)
class Mismatch:
    group: str
    coll_seq: int
    field: str                                      # name | op | dtype | count | peer
    values: tuple[tuple[object, tuple[int, ...]], ...]  # (value, ranks holding it), most common first

    def text(self) -> str:
        parts = "; ".join(f"{v} on {_ranks_word(rs)}" for v, rs in self.values)
        return f"group {self.group}: ranks disagree at #{self.coll_seq} on the {_FIELD_WORDS[self.field]}: {parts}"


@dataclass(frozen=True)
class LastCompleted:
    rank: int
    coll_seq: int | None                            # None: no completed collective of this group recorded
    name: str | None


@dataclass(frozen=True)
class GroupReport:
    group: str
    ranks: tuple[int, ...]                          # members considered
    last_completed: tuple[LastCompleted, ...]
    divergence: int | None                          # first coll_seq where the ranks diverge
    divergence_name: str | None
    reached: tuple[int, ...] = ()                   # ranks that joined the divergent collective
    never_joined: tuple[int, ...] = ()
    not_completed: tuple[tuple[int, str], ...] = ()  # (rank, state): joined, did not complete
    timed_out: tuple[int, ...] = ()
    no_dump: tuple[int, ...] = ()                   # expected members that left no dump
    unknown: tuple[int, ...] = ()                   # ranks whose ring no longer holds it / events off
    mismatches: tuple[Mismatch, ...] = ()
    lines: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        return self.divergence is None and not self.mismatches and not self.no_dump


@dataclass(frozen=True)
class P2POp:
    """A point-to-point op that did not complete (timed out, failed, or in flight at dump time)."""
    rank: int
    group: str
    seq: int                                        # the rank's own p2p counter
    name: str
    peer: int | None
    state: str

    def text(self) -> str:
        to = {"send": "to", "isend": "to"}.get(self.name, "from")
        who = f"rank {self.peer}" if self.peer is not None else "any rank"
        how = {"enqueued": "was still queued when dumped", "started": "was still waiting when dumped",
               "timeout": "timed out", "error": "failed"}[self.state]
        return f"p2p: rank {self.rank} {self.name} {to} {who} (group {self.group}, p2p #{self.seq}) {how}"


@dataclass(frozen=True)
class Report:
    groups: tuple[GroupReport, ...]
    ranks: tuple[int, ...]                          # ranks that left a dump
    missing_ranks: tuple[int, ...]                  # expected (world size) but no dump
    notes: tuple[str, ...] = ()
    consistent: bool = True
    p2p: tuple[P2POp, ...] = ()                     # unfinished send/recv (timeouts, errors, in flight)

    def group(self, name: str) -> GroupReport:
        for g in self.groups:
            if g.group == name:
                return g
        raise KeyError(f"no process group {name!r} in the report; groups: {[g.group for g in self.groups]}")

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.missing_ranks:
            last = max(self.ranks + self.missing_ranks)
            out.append(f"no dump from {_ranks_word(self.missing_ranks)} (expected ranks 0-{last}): "
                       "it may have exited or crashed before writing one")
        for g in self.groups:
            out.extend(g.lines)
        out.extend(p.text() for p in self.p2p)
        if not self.groups:
            out.append(f"no collectives recorded by {_ranks_word(self.ranks)}")
        out.append("result: all ranks consistent" if self.consistent else "result: ranks diverge (see above)")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict:
        from dataclasses import asdict
        d = asdict(self)
        d["text"] = self.text()
        return d


def _ranks_word(ranks) -> str:
    rs = sorted(set(ranks))
    if not rs:
        return "no rank"
    parts, i = [], 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1] == rs[j] + 1:
            j += 1
        parts.extend([f"{rs[i]}-{rs[j]}"] if j - i >= 2 else [str(r) for r in rs[i:j + 1]])
        i = j + 1
    return ("rank " if len(rs) == 1 else "ranks ") + ",".join(parts)


@dataclass
class _View:  # one rank's record of one collective, merged over its events
    name: str | None = None
    op: str | None = None
    dtype: str | None = None
    count: int | None = None
    peer: int | None = None
    state: str = "enqueued"
    error: str | None = None
    missing: tuple = ()


def _collect(dumps):
    """group -> rank -> coll_seq -> _View, group -> hints (ranks lists, sizes), and the p2p views
    ((rank, group, seq) -> _View), which have their own sequence numbers."""
    groups: dict[str, dict[int, dict[int, _View]]] = {}
    hints: dict[str, dict] = {}
    p2p: dict[tuple, _View] = {}
    for d in dumps:
        r = d["rank"]
        for e in d["events"]:
            st = _STATE_OF_KIND.get(e.get("kind"))
            if st is None or e.get("group") is None or not isinstance(e.get("coll_seq"), int):
                continue
            g = str(e["group"])
            if is_p2p(e):
                v = p2p.setdefault((r, g, e["coll_seq"]), _View())
            else:
                v = groups.setdefault(g, {}).setdefault(r, {}).setdefault(e["coll_seq"], _View())
            for f in ("name", "op", "dtype", "count", "peer"):
                if getattr(v, f) is None and e.get(f) not in (None, ""):
                    setattr(v, f, e[f])
            if _STATE_RANK[st] >= _STATE_RANK[v.state]:
                v.state = st
            extra = e.get("extra") or {}
            if st in ("timeout", "error"):
                v.error = extra.get("error") or v.error
                miss = extra.get("missing_ranks") or extra.get("missing")
                if isinstance(miss, (list, tuple)):
                    v.missing = tuple(miss)
            h = hints.setdefault(g, {"ranks": set(), "size": None})
            listed = extra.get("ranks") or extra.get("group_ranks")
            if isinstance(listed, (list, tuple)):
                h["ranks"].update(int(x) for x in listed)
            if isinstance(extra.get("group_size"), int):
                h["size"] = extra["group_size"]
    return groups, hints, p2p


def _mismatches(group, s, views: dict[int, _View]) -> list[Mismatch]:
    def split(f):
        by: dict = {}
        for r, v in views.items():
            val = getattr(v, f)
            if val is not None:
                by.setdefault(val, []).append(r)
        if len(by) < 2:
            return None
        vals = sorted(by.items(), key=lambda kv: (-len(kv[1]), min(kv[1])))
        return Mismatch(group, s, f, tuple((k, tuple(sorted(rs))) for k, rs in vals))

    m = split("name")
    if m is not None:
        return [m]  # different collectives: their other fields differ for that reason alone
    name = next((v.name for v in views.values() if v.name), "")
    fields = ["op", "dtype"] + ([] if name in _UNEVEN else ["count"]) + (["peer"] if name in _ROOTED else [])
    return [m for m in map(split, fields) if m is not None]


def _analyze_group(g: str, per_rank, hints, dumps_by_rank, world: int | None) -> GroupReport:
    h = hints.get(g, {"ranks": set(), "size": None})
    members = set(per_rank) | h["ranks"]
    if g in _WORLD_NAMES or (h["size"] is not None and h["size"] == world and not h["ranks"]):
        members |= set(dumps_by_rank)
        if world is not None:
            members |= set(range(world))
    members = sorted(members)
    no_dump = tuple(r for r in members if r not in dumps_by_rank)

    lows, highs, blind = {}, {}, set()
    for r in members:
        d = dumps_by_rank.get(r)
        recs = per_rank.get(r, {})
        if d is None or d.get("mode") == "off":
            blind.add(r)
            continue
        # A wrapped or cleared ring no longer holds its oldest collectives: unknown, not missing.
        wrapped = (d.get("dropped") or 0) > 0 or (d.get("cleared_before_seq") or 0) > 0
        lows[r] = min(recs) if (wrapped and recs) else (float("inf") if wrapped else float("-inf"))
        highs[r] = max(recs) if recs else None

    def status(r, s):
        if r in blind:
            return "nodump" if r in no_dump else "unknown"
        v = per_rank.get(r, {}).get(s)
        if v is not None:
            return v.state
        if s < lows[r] or (highs[r] is not None and s < highs[r]):
            return "unknown"  # wrapped out of its ring, or a gap with later collectives recorded
        return "missing"

    last = []
    for r in members:
        done = [s for s, v in per_rank.get(r, {}).items() if v.state == "completed"]
        s = max(done) if done else None
        last.append(LastCompleted(r, s, per_rank[r][s].name if s is not None else None))
    last_by = {lc.rank: lc for lc in last}

    seqs = sorted({s for recs in per_rank.values() for s in recs})
    div = None
    mismatches: list[Mismatch] = []
    for s in seqs:
        st = {r: status(r, s) for r in members}
        views = {r: per_rank[r][s] for r in members if s in per_rank.get(r, {})}
        mm = _mismatches(g, s, views)
        mismatches.extend(mm)
        joined = [r for r in members if st[r] in _JOINED]
        states = {st[r] for r in joined}
        bad = (mm or any(st[r] == "missing" for r in members) or states & {"timeout", "error"}
               or ("completed" in states and len(states) > 1))
        if bad and div is None:
            div = (s, st, views)
    lines = []
    lc_groups: dict = {}
    for lc in last:
        if lc.rank not in blind:
            lc_groups.setdefault((lc.coll_seq, lc.name), []).append(lc.rank)
    if lc_groups:
        lines.append(f"group {g}: last completed collective: " + "; ".join(
            f"{_ranks_word(rs)} {'#%d %s' % (s, n) if s is not None else 'none'}"
            for (s, n), rs in sorted(lc_groups.items(), key=lambda kv: (kv[0][0] is None, -(kv[0][0] or 0)))))
    if div is None:
        if no_dump:
            lines.append(f"group {g}: {_ranks_word(no_dump)} left no dump (exited or crashed before writing "
                         "one); the other ranks agree on every recorded collective")
        elif seqs:
            seen = [r for r in members if r not in blind]
            lines.append(f"group {g}: consistent: {_ranks_word(seen)} agree{'s' if len(seen) == 1 else ''} "
                         f"on every recorded collective (#{seqs[0]}..#{seqs[-1]})")
        return GroupReport(g, tuple(members), tuple(last), None, None, mismatches=tuple(mismatches),
                           no_dump=no_dump, unknown=tuple(sorted(blind - set(no_dump))), lines=tuple(lines))

    s, st, views = div
    counts = Counter(views[r].name for r in sorted(views) if views[r].name).most_common()
    tie = len(counts) > 1 and counts[0][1] == counts[1][1]
    name = counts[0][0] if counts and not tie else None
    # A rank that issued a different collective as #s skipped or reordered one: it never joined `name`.
    # Without a majority there is no telling which side did.
    other = {r: v for r, v in views.items() if name and v.name and v.name != name}
    joined = [r for r in members if st[r] in _JOINED and r not in other]
    never = [r for r in members if st[r] == "missing" or r in other]
    timed = [r for r in joined if st[r] == "timeout"]
    not_done = [(r, st[r]) for r in joined if st[r] != "completed"]
    unknown = [r for r in members if st[r] == "unknown"]
    if tie:
        head = (f"group {g}: {_ranks_word(joined)} issued different collectives as #{s} and none has a "
                "majority, so which side skipped or reordered one is unclear")
        name_word = f"#{s}"
    else:
        name = name or "collective"
        head = f"group {g}: {_ranks_word(joined)} reached {name} #{s}"
        name_word = f"{name} #{s}"
    if not tie and joined and len(not_done) == len(joined) and len({x for _, x in not_done}) == 1:
        head += {"timeout": " and timed out waiting in it", "error": " and failed in it",
                 "started": " and were still inside it when dumped",
                 "enqueued": " and still had it queued when dumped"}[not_done[0][1]]
    parts = [head]
    by_why: dict = {}
    for r in never:
        lc = last_by[r]
        instead = (other[r].name, st[r]) if r in other else None
        by_why.setdefault((instead, lc.coll_seq, lc.name), []).append(r)
    for (instead, ls, ln), rs in sorted(by_why.items(), key=lambda kv: min(kv[1])):
        one = len(rs) == 1
        their = "its" if one else "their"
        why = (f"{their} last completed collective was #{ls} {ln}" if ls is not None
               else f"{'it' if one else 'they'} completed no collective of this group")
        if instead is not None:
            why = (f"{'it' if one else 'they'} issued {instead[0]} as #{s} instead, {_STATE_WORDS[instead[1]]}: "
                   "a skipped or reordered collective" + (f"; {why}" if ls != s else ""))
        parts.append(f"{_ranks_word(rs)} never joined it ({why})")
    if len(not_done) < len(joined) and not tie:
        by_state: dict = {}
        for r, x in not_done:
            by_state.setdefault(x, []).append(r)
        for x, rs in sorted(by_state.items()):
            parts.append(f"{_ranks_word(rs)} joined it but never completed it ({_NOT_DONE_WORDS[x]})")
    nd = [r for r in members if st[r] == "nodump"]
    if nd:
        parts.append(f"{_ranks_word(nd)} left no dump (exited or crashed before writing one)")
    if unknown:
        parts.append(f"{_ranks_word(unknown)}: no record of it (ring wrapped or events off)")
    lines.append("; ".join(parts))
    for r in joined:
        v = views[r]
        if v.missing:
            lines.append(f"group {g}: rank {r} reports {name_word} was waiting for {_ranks_word(v.missing)}")
        if v.error and st[r] == "error":
            lines.append(f"group {g}: rank {r} error in {name_word}: {v.error}")
    lines.extend(m.text() for m in mismatches)
    return GroupReport(g, tuple(members), tuple(last), s, name, reached=tuple(joined), never_joined=tuple(never),
                       not_completed=tuple(not_done), timed_out=tuple(timed), no_dump=no_dump,
                       unknown=tuple(unknown), mismatches=tuple(mismatches), lines=tuple(lines))


def analyze(dumps) -> Report:
    """Analyze dumps: a list of dump dicts (``dump()``/``snapshot()`` data), or of paths
    (directories of ``vt_events_rank*_pid*.json`` files, or single dump files)."""
    notes: list[str] = []
    if isinstance(dumps, (str, os.PathLike)):
        dumps = [dumps]
    dumps = list(dumps)
    if dumps and all(isinstance(d, (str, os.PathLike)) for d in dumps):
        from .dumpfile import load_dumps
        dumps, notes = load_dumps(*map(os.fspath, dumps))
    for d in dumps:
        if not isinstance(d, dict) or not isinstance(d.get("rank"), int) or not isinstance(d.get("events"), list):
            raise ValueError("analyze: each dump must be a dict with an integer 'rank' and an 'events' list "
                             f"(as written by vt.observe.dump); got {str(d)[:100]}")
    by_rank: dict[int, dict] = {}
    for d in dumps:
        if d["rank"] in by_rank:
            raise ValueError(f"analyze: two dumps for rank {d['rank']}; pass one per rank "
                             "(load_dumps keeps the newest)")
        by_rank[d["rank"]] = d
    worlds = [d.get("world_size") for d in dumps if isinstance(d.get("world_size"), int)]
    world = max(worlds) if worlds else None
    missing = tuple(r for r in range(world) if r not in by_rank) if world else ()
    for d in dumps:
        if d.get("mode") == "off":
            notes.append(f"rank {d['rank']}: events were off (VT_EVENTS=off); nothing to analyze for it")
    groups, hints, p2p = _collect(dumps)
    reports = tuple(_analyze_group(g, groups[g], hints, by_rank, world)
                    for g in sorted(groups, key=lambda g: (g not in _WORLD_NAMES, g)))
    open_p2p = tuple(P2POp(r, g, q, v.name or "p2p", v.peer, v.state)
                     for (r, g, q), v in sorted(p2p.items()) if v.state != "completed")
    consistent = (all(gr.consistent for gr in reports) and not missing
                  and not any(p.state in ("timeout", "error") for p in open_p2p))
    return Report(reports, tuple(sorted(by_rank)), missing, tuple(notes), consistent, open_p2p)
