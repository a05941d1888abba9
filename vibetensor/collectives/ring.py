"""Our ring allreduce, written once over the transport interface (sendrecv + local reduce).

Reduce-scatter then all-gather: 2(n-1) steps. Each step's chunk is cut into segments; a segment is
a "slot" and slots are posted through a window of ``depth`` in-flight transfers, so the transfer of
segment k+1 overlaps the reduction of segment k. Slot k depends only on slot k - nseg (the same
segment one step earlier), so the window never waits on work it does not need. All local ranks of
the process (several devices for ``local``/multi-GPU NCCL) advance in lock step, one batch per slot.
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
    """
    n = transport.size
    N = int(bufs[0].size)
    if N == 0 or n == 1:
        return
    order = list(order) if order else list(range(n))
    pos = {r: i for i, r in enumerate(order)}
    itemsize = bufs[0].dtype.itemsize
    seg_bytes = segment_bytes or SEGMENT_BYTES
    seg_bytes = min(seg_bytes, getattr(transport, "max_segment_bytes", seg_bytes))  # ipc: its slot size
    depth = max(1, depth or DEPTH)
    nseg = max(1, -(-(N // n) * itemsize // seg_bytes))
    max_chunk = -(-N // n)                  # ceil(N / n)
    max_seg = -(-max_chunk // nseg) + 1     # ceil(max_chunk / nseg), plus slack
    steps = n - 1
    k_start = 0 if "rs" in phases else steps * nseg
    k_end = 2 * steps * nseg if "ag" in phases else steps * nseg
    locs = []
    for li, r in enumerate(transport.local_ranks):
        p = pos[r]
        ntmp = min(depth, steps * nseg) if "rs" in phases else 0
        tmps = [_tmp(transport, li, k, max_seg, bufs[li]) for k in range(ntmp)]
        locs.append((li, p, order[(p + 1) % n], order[(p - 1) % n], tmps))
    scale_last = 1.0 / n if op is ReduceOp.AVG else None

    def seg(c, j):
        c0, c1 = _bounds(N, n, order[(c - 1) % n])
        s0, s1 = _bounds(c1 - c0, nseg, j)
        return c0 + s0, c0 + s1

    def slot_items(k):
        items = []
        s, j = divmod(k, nseg)
        for li, p, nxt, prv, tmps in locs:
            x = bufs[li]
            if s < steps:  # reduce-scatter: send chunk p-s, receive chunk p-s-1 into a temporary
                a0, a1 = seg(p - s, j)
                b0, b1 = seg(p - s - 1, j)
                recv = tmps[k % len(tmps)][:b1 - b0]
            else:          # all-gather: send chunk p+1-t, receive chunk p-t in place
                t = s - steps
                a0, a1 = seg(p + 1 - t, j)
                b0, b1 = seg(p - t, j)
                recv = x[b0:b1]
            items.append(SendRecv(li, x[a0:a1] if a1 > a0 else None, nxt, recv if b1 > b0 else None, prv,
                                  reduce_from_peer=s < steps))
        return [it for it in items if it.send is not None or it.recv is not None]

    handles = {}
    posted = done = k_start
    while done < k_end:
        while posted < k_end and posted - done < depth and posted - nseg < done:
            items = slot_items(posted)
            handles[posted] = transport.post_sendrecv(items) if items else None
            posted += 1
        h = handles.pop(done)
        if h is not None and not getattr(h, "stream_ordered", False):
            wait(h)  # stream-ordered transports (NCCL) queue the reduction behind the transfer instead
        s, j = divmod(done, nseg)
        if s < steps:
            last = s == steps - 1
            lent = getattr(h, "view", None)  # shm: reduce straight from the peer's slot
            for li, p, nxt, prv, tmps in locs:
                b0, b1 = seg(p - s - 1, j)
                if b1 > b0:
                    src = lent if lent is not None else tmps[done % len(tmps)][:b1 - b0]
                    transport.reduce_into(li, bufs[li][b0:b1], src, op, scale_last if last else None)
            if lent is not None:
                h.release()
        done += 1
    wait(transport.fence())
