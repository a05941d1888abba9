"""send / recv / isend / irecv / batch_isend_irecv: posted at once (nonblocking), completed by
polling against the deadline in ``Work.wait`` / ``is_completed``."""
from __future__ import annotations

import itertools
import time

from .. import observe
from ..observe import EventKind
from .buffers import Flat
from .errors import CollectiveError, CollectiveTimeout
from .work import Work, poll

_p2p_seq = itertools.count(1)


def post_p2p(group, kind, tensor, peer, tag, timeout):
    name = "send" if kind == "send" else "recv"
    ts = group._per_local(tensor, name)
    if len(ts) != 1:
        raise NotImplementedError(f"{name} on group {group.name!r} with {len(ts)} local ranks (the local "
                                  f"transport): move data between devices with tensor.to(device)")
    t = ts[0]
    if not isinstance(tag, int) or not 0 <= tag < 32768:
        raise ValueError(f"{name}: tag must be an int in 0..32767, got {tag!r}")
    gpeer = None
    if peer is not None:
        gpeer = group._root(peer, name, "dst" if kind == "send" else "src")
        if gpeer == group.rank():
            raise ValueError(f"{name}: peer {peer} is this rank; send/recv need another rank")
    elif kind == "send":
        raise ValueError("send: dst is required")
    tr = group._transport([t], name)
    if not hasattr(tr, "post_p2p"):
        raise NotImplementedError(f"{name} over the {tr.name} transport")
    group._check_broken()
    limit = group.timeout(timeout)
    seq = next(_p2p_seq)
    ev = dict(group=group.name, coll_seq=seq, dtype=t.dtype.name, count=t.numel(), nbytes=t.nbytes,
              peer=gpeer, device=str(t.device))
    observe.record(EventKind.COLLECTIVE_START, name, state="started", **ev)
    flat = Flat(t) if kind == "recv" else Flat(t, need_copy=not t._data.flags.c_contiguous)
    try:
        h = tr.post_p2p(kind, flat.arr, gpeer, tag, group._p2p_comm)
    except Exception as e:
        raise CollectiveError(f"{name}: posting to peer {peer} failed: {e}") from e
    deadline = time.monotonic() + limit
    w = Work(name, seq, group.name)
    w.source = peer
    t0 = time.perf_counter_ns()

    def complete():
        if kind == "recv":
            flat.commit()
            src = getattr(h, "source", None)
            w.source = group._world_ranks[src] if (src is not None and group._side is not None) else src
        observe.record(EventKind.COLLECTIVE_COMPLETE, name, state="completed",
                       duration_ns=time.perf_counter_ns() - t0, **ev)

    def check(block, wait_timeout=None):
        try:
            if not block:
                if h.test():
                    complete()
                    return True
                if time.monotonic() < deadline:
                    return False
            end = deadline if wait_timeout is None else min(deadline, time.monotonic() + float(wait_timeout))
            if poll(h.test, end):
                complete()
                return True
        except CollectiveTimeout:
            raise
        except Exception as e:
            raise CollectiveError(f"{name} with peer {peer} (tag {tag}) in group {group.name!r} failed: {e}. "
                                  f"Check that both sides use the same tag and a receive buffer at least as "
                                  f"large as the message") from e
        if wait_timeout is not None and time.monotonic() < deadline:
            raise CollectiveTimeout(f"Work.wait: {name} with peer {peer} not done within {wait_timeout} s",
                                    group=group.name, seq=seq, op=name, timeout=wait_timeout)
        h.abort()
        observe.record(EventKind.COLLECTIVE_TIMEOUT, name, state="timeout", **ev)
        observe.counter_add("collectives.timeouts", 1)
        missing = [peer] if peer is not None else []
        raise CollectiveTimeout(
            f"{name} (p2p #{seq} in group {group.name!r}, tag {tag}) timed out after {limit:g} s on rank "
            f"{group.rank()}: peer {peer if peer is not None else '(any source)'} never posted the matching "
            f"{'recv' if kind == 'send' else 'send'}", group=group.name, seq=seq, op=name, missing=missing,
            timeout=limit)

    w._poll = check
    return w
