"""Our ring allreduce, written once over the transport interface (sendrecv + local reduce).

Reduce-scatter then all-gather: 2(n-1) steps. Each step's chunk is cut into segments; a segment is
a "slot" and slots are posted through a window of ``depth`` in-flight transfers, so the transfer of
segment k+1 overlaps the reduction of segment k. A slot depends only on the same segment one step
earlier, so the window never waits on work it does not need. All local ranks of the process
(several devices for ``local``/multi-GPU NCCL) advance in lock step, one batch per slot.

Everything that depends only on the call's shape (element ranges per slot, dependencies, the order
slots are posted in) is a ``_Plan`` cached on the transport: a call then costs a few list reads and
two array views per segment, which is what lets small (cache-sized) segments pay off on CPU.
"""
from __future__ import annotations

from .transport.base import SendRecv
from .types import ReduceOp

# Tuned with benchmarks/allreduce.py (see BENCHMARKS.md): segment size and in-flight window.
SEGMENT_BYTES = 1 << 20
DEPTH = 4


def _bounds(total: int, parts: int, i: int) -> tuple[int, int]:
    return (i * total) // parts, ((i + 1) * total) // parts


def ring_order(transport) -> list:
    """Ring order of group ranks, computed once per transport: Fabric's placement (neighbours on the
    fastest links, e.g. NVLink) when the transport knows every rank's device, else index order."""
    cached = transport.__dict__.get("_ring_order")
    if cached is not None:
        return cached
    n = transport.size
    order = list(range(n))
    devs = getattr(transport, "global_devices", None)
    devs = devs() if callable(devs) else None
    if devs is not None and len(devs) == n and len({str(d) for d in devs}) == n:
        try:
            from ..fabric.placement import ring_order as fabric_ring_order  # noqa: PLC0415 - optional layer
            got = list(fabric_ring_order(devs))
            pos = {str(d): i for i, d in enumerate(devs)}
            cand = [pos[str(d)] for d in got]
            if sorted(cand) == order:
                order = cand
        except Exception as e:  # no topology: index order, but say so
            from .. import observe
            observe.counter_add("collectives.ring_order_fallback", 1)
            transport.__dict__["_ring_order_error"] = repr(e)
    transport.__dict__["_ring_order"] = order
    return order


_TMP_CACHE_BYTES = 256 << 20


def _tmp(transport, li, k, n, like):
    """Receive temporaries, kept on the transport between calls: fresh host memory costs page faults
    (the kernel zeroes every page) that dominate a 1 MiB all_reduce. Reuse is safe: each transport
    orders a temporary's next write after its last read (host: program order; GPU: one stream)."""
    cache = transport.__dict__.setdefault("_ring_tmps", {})
    key = (li, k, like.dtype.str, getattr(getattr(like, "device", None), "id", None))
    a = cache.get(key)
    if a is None or a.size < n:
        if sum(x.nbytes for x in cache.values()) > _TMP_CACHE_BYTES:
            cache.clear()
        a = cache[key] = transport.alloc(li, n, like.dtype, like=like)
    return a[:n]


class _Plan:
    """One ring call's schedule. ``slots[i]``: per local rank ``(li, a0, a1, dst, b0, b1, src, reduce,
    last, tmp)`` -- send ``x[a0:a1]`` to ``dst``, receive ``x[b0:b1]`` from ``src`` (reduce: into
    temporary ``tmp`` then reduced into ``x[b0:b1]``; ``last``: the final reduction, where AVG scales);
    an empty range is ``a0 == a1``. ``deps[i]``: the slot that must be done before slot i is posted.
    Slots go step by step (posting a segment's next step right after its reduction instead measured
    no faster: with 1 MiB segments the data leaves L2 either way)."""

    __slots__ = ("deps", "depth", "max_seg", "ntmp", "slots")

    def __init__(self, n, N, itemsize, local_ranks, order, phases, seg_bytes, depth):
        pos = {r: i for i, r in enumerate(order)}
        nseg = max(1, -(-(N // n) * itemsize // seg_bytes))
        chunks = [_bounds(N, n, c) for c in range(n)]
        steps = n - 1
        s_lo = 0 if "rs" in phases else steps
        s_hi = 2 * steps if "ag" in phases else steps
        keys = [(s, j) for s in range(s_lo, s_hi) for j in range(nseg)]
        index = {sj: i for i, sj in enumerate(keys)}

        def seg(c, j):  # segment j of the chunk that ring position c - 1 ends up owning
            c0, c1 = chunks[order[(c - 1) % n]]
            return c0 + (j * (c1 - c0)) // nseg, c0 + ((j + 1) * (c1 - c0)) // nseg

        self.slots, self.deps = [], []
        nred = 0
        for s, j in keys:
            per = []
            red = s < steps
            for li, r in enumerate(local_ranks):
                p = pos[r]
                if red:    # reduce-scatter: send chunk p-s, receive chunk p-s-1 and reduce it
                    a, b = seg(p - s, j), seg(p - s - 1, j)
                else:      # all-gather: send chunk p+1-t, receive chunk p-t in place
                    t = s - steps
                    a, b = seg(p + 1 - t, j), seg(p - t, j)
                if a[1] > a[0] or b[1] > b[0]:
                    per.append((li, a[0], a[1], order[(p + 1) % n], b[0], b[1], order[(p - 1) % n], red,
                                s == steps - 1, nred if red else -1))
            if red:
                nred += 1
            self.slots.append(per)
            self.deps.append(index[(s - 1, j)] if s > s_lo else -1)
        # temporaries cycle through the reduce slots; `ntmp >= depth` keeps in-flight ones distinct
        self.ntmp = min(depth, nred)
        for per in self.slots:
            for q, e in enumerate(per):
                if e[9] >= 0:
                    per[q] = e[:9] + (e[9] % self.ntmp,)
        max_chunk = -(-N // n)
        self.max_seg = -(-max_chunk // nseg) + 1  # plus slack: segments differ by one element
        self.depth = depth


_PLANS_MAX = 64


def _plan(transport, N, itemsize, order, phases, seg_bytes, depth):
    seg_bytes = min(seg_bytes, getattr(transport, "max_segment_bytes", seg_bytes))  # ipc/shm: their slot size
    depth = min(depth, getattr(transport, "max_depth", depth))                      # shm: its slots per peer
    key = (N, itemsize, order, phases, seg_bytes, depth)
    plans = transport.__dict__.setdefault("_ring_plans", {})
    p = plans.get(key)
    if p is None:
        if len(plans) >= _PLANS_MAX:
            plans.clear()
        p = plans[key] = _Plan(transport.size, N, itemsize, transport.local_ranks, list(order), phases,
                               seg_bytes, depth)
    return p


def ring_allreduce(transport, bufs, op: ReduceOp, wait, order=None, segment_bytes=None, depth=None):
    """All-reduce the flat contiguous per-local-rank arrays ``bufs`` in place.

    ``wait(handle)`` polls a transport handle until it completes or the collective's deadline passes
    (raising CollectiveTimeout)."""
    ring(transport, bufs, op, wait, ("rs", "ag"), order, segment_bytes, depth)


def ring(transport, bufs, op, wait, phases=("rs", "ag"), order=None, segment_bytes=None, depth=None):
    """The ring over ``n`` equal-as-possible chunks of each flat buffer.

    Chunk ``c`` in ring terms ends up owned by ring position ``c - 1``; it is data chunk
    ``order[c - 1]`` so that after the reduce-scatter phase group rank ``r`` holds the reduced data
    chunk ``r`` (reduce_scatter), and the all-gather phase alone spreads chunk ``r`` of rank ``r``
    (all_gather). For all_reduce any bijection would do; this one serves all three.

    A transport with ``reduces_on_recv`` (shm) reduces a received segment straight from the peer's
    memory into ``x[b0:b1]`` (the item carries ``op``/``scale``): no temporary, no second pass.
    """
    n = transport.size
    N = int(bufs[0].size)
    if N == 0 or n == 1:
        return
    plan = _plan(transport, N, bufs[0].dtype.itemsize, tuple(order) if order else tuple(range(n)), tuple(phases),
                 segment_bytes or SEGMENT_BYTES, max(1, depth or DEPTH))
    scale = 1.0 / n if op is ReduceOp.AVG else None
    on_recv = getattr(transport, "reduces_on_recv", False)
    tmps = None
    if plan.ntmp and not on_recv:
        tmps = [[_tmp(transport, li, k, plan.max_seg, bufs[li]) for k in range(plan.ntmp)]
                for li in range(len(transport.local_ranks))]
    post, slots, deps, depth = transport.post_sendrecv, plan.slots, plan.deps, plan.depth
    total = len(slots)
    handles = [None] * total
    posted = done = 0
    while done < total:
        while posted < total and posted - done < depth and deps[posted] < done:
            items = []
            for li, a0, a1, dst, b0, b1, src, red, last, k in slots[posted]:
                x = bufs[li]
                recv = None
                if b1 > b0:
                    recv = x[b0:b1] if not red or on_recv else tmps[li][k][:b1 - b0]
                items.append(SendRecv(li, x[a0:a1] if a1 > a0 else None, dst, recv, src,
                                      op if red else None, scale if last else None))
            handles[posted] = post(items) if items else None
            posted += 1
        h = handles[done]
        handles[done] = None
        if h is not None and not getattr(h, "stream_ordered", False):
            wait(h)  # stream-ordered transports (NCCL) queue the reduction behind the transfer instead
        if tmps is not None:
            for li, a0, a1, dst, b0, b1, src, red, last, k in slots[done]:
                if red and b1 > b0:
                    transport.reduce_into(li, bufs[li][b0:b1], tmps[li][k][:b1 - b0], op, scale if last else None)
        done += 1
    wait(transport.fence())
