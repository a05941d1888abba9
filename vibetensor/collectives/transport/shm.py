"""``shm``: the ring's transport for CPU tensors when every rank of an MPI group is on one host.

MPI point-to-point on one host copies a message twice (into a shared cell, out of it) and the ring
then adds a third pass to reduce it. Here each rank owns an MPI shared-memory window (allocated once
per group) with slots per destination and a few counters:

  sender:   wait until the slot is free (the receiver's ack counter), copy the data into it,
            memory barrier (MPI_Win_sync), bump its ready counter for that destination;
  receiver: see the counter, barrier, and either copy the slot out (all-gather steps) or -- for the
            reduce-scatter steps -- reduce straight from the peer's slot into the result (one ufunc
            pass, no temporary), barrier, then bump its ack counter.

Messages to one peer are published and consumed strictly in order. A send whose slot is still busy
waits in a backlog that every ``test()`` advances, so a later handle's poll also moves earlier sends.
Waiting is polling host memory against the collective's deadline (never a blocking MPI call).
Per segment this is a handful of Python operations: slot views are made once, counters are read
through an int64 memoryview (a plain load, no numpy scalar).
"""
from __future__ import annotations

import collections

import numpy as np

from .base import Handle, Transport
from .mpi import mpi
from .reduce_kernels import host_reduce_into


class _Xfer(Handle):
    __slots__ = ("tr", "dst", "m_send", "recv", "src", "m_recv", "op", "scale")

    def __init__(self, tr, it):
        self.tr, self.dst, self.recv, self.src, self.op, self.scale = tr, it.dst, it.recv, it.src, it.op, it.scale
        self.m_send = tr._send(it.send, it.dst) if it.send is not None else -1
        if it.recv is not None:
            self.m_recv = tr.nrecv[it.src]
            tr.nrecv[it.src] += 1
        self.test()

    def test(self):
        tr = self.tr
        if tr.backlog:
            tr._flush()
        if self.recv is not None:
            if not tr._take(self):
                return False
            self.recv = None
        return self.m_send < tr.published[self.dst]


class ShmTransport(Transport):
    name = "shm"
    reduces_on_recv = True

    def __init__(self, comm, slot_bytes, nslots, deadline):
        from ..work import poll
        MPI = mpi()
        self.comm = comm
        self.size = n = comm.Get_size()
        self.rank = comm.Get_rank()
        self.local_ranks = [self.rank]
        self.max_segment_bytes = slot_bytes
        self.slot_bytes = sb = slot_bytes + 256  # a segment may exceed the nominal size by an element
        self.nslots = nslots
        self.nsend, self.nrecv = [0] * n, [0] * n        # messages numbered per peer
        self.published, self.consumed = [0] * n, [0] * n
        self.backlog = collections.deque()               # (dst, m, array): sends waiting for a free slot
        self.fbytes = 64 * (-(-(16 * n) // 64))
        total = self.fbytes + n * nslots * sb
        req = comm.Ibarrier()  # everyone is here, so the blocking window allocation cannot hang
        if not poll(req.Test, deadline):
            from ..errors import CollectiveTimeout
            raise CollectiveTimeout("shm: not every rank reached the shared-memory window set-up in time")
        self.win = MPI.Win.Allocate_shared(total, 1, comm=comm)
        self.win.Lock_all()  # one passive epoch: Win_sync is then a memory barrier
        mem = [np.frombuffer(self.win.Shared_query(q)[0], dtype=np.uint8) for q in range(n)]
        # counters of rank q: [ready for dst 0..n-1 | acks of messages from src 0..n-1]
        self.flags = [memoryview(m[:16 * n]).cast("B").cast("q") for m in mem]
        self.mine = self.flags[self.rank]

        def slot(owner, dst, i):
            off = self.fbytes + (dst * nslots + i) * sb
            return mem[owner][off:off + sb]
        self.out = [[slot(self.rank, q, i) for i in range(nslots)] for q in range(n)]  # mine, toward q
        self.inn = [[slot(q, self.rank, i) for i in range(nslots)] for q in range(n)]  # q's, toward me
        for i in range(2 * n):
            self.mine[i] = 0
        self.win.Sync()
        req = comm.Ibarrier()  # every rank zeroed its counters before anyone reads them
        if not poll(req.Test, deadline):
            from ..errors import CollectiveTimeout
            raise CollectiveTimeout("shm: a rank left during the shared-memory window set-up")
        self.win.Sync()

    # ---------------------------------------------------------------- the protocol
    def _send(self, arr, dst):
        m = self.nsend[dst]
        self.nsend[dst] = m + 1
        if self.backlog or not self._publish(dst, m, arr):
            self.backlog.append((dst, m, arr))
        return m

    def _flush(self):
        q = self.backlog
        while q and self._publish(*q[0]):
            q.popleft()

    def _publish(self, dst, m, arr):
        if self.flags[dst][self.size + self.rank] <= m - self.nslots:
            return False  # the receiver still reads that slot
        nb = arr.nbytes
        self.out[dst][m % self.nslots][:nb].view(arr.dtype)[...] = arr
        self.win.Sync()  # data before counter
        self.mine[dst] = m + 1
        self.published[dst] = m + 1
        return True

    def _take(self, x):
        src, m = x.src, x.m_recv
        if self.consumed[src] != m or self.flags[src][self.rank] <= m:
            return False  # in order: a later message must not free a slot an earlier one still needs
        self.win.Sync()  # counter before data
        recv = x.recv
        data = self.inn[src][m % self.nslots][:recv.nbytes].view(recv.dtype)
        if x.op is None:
            recv[...] = data
        else:
            host_reduce_into(recv, data, x.op, x.scale)
        self.win.Sync()  # reads done before the slot is handed back
        self.mine[self.size + src] = m + 1
        self.consumed[src] = m + 1
        return True

    # ---------------------------------------------------------------- transport interface
    def devices(self):
        from ...core.device import CPU
        return [CPU]

    def alloc(self, local, n, np_dtype, like=None):
        return np.empty((n,), dtype=np_dtype)

    def reduce_into(self, local, dst, src, op, scale=None):
        host_reduce_into(dst, src, op, scale)

    def post_sendrecv(self, items):
        if len(items) != 1:
            raise NotImplementedError("shm: one local rank per process")
        it = items[0]
        for a in (it.send, it.recv):
            if a is not None and a.nbytes > self.slot_bytes:
                raise ValueError(f"shm: a message of {a.nbytes} bytes exceeds the {self.slot_bytes}-byte slot")
        return _Xfer(self, it)

    def close(self):
        self.backlog.clear()
        try:
            self.win.Unlock_all()
        except Exception:
            pass


def intra_node_comm(comm, deadline):
    """A duplicate of ``comm`` when all its ranks share one host (else None); bounded by ``deadline``."""
    from ..work import poll
    MPI = mpi()
    req = comm.Ibarrier()
    if not poll(req.Test, deadline):
        return None
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    same = node.Get_size() == comm.Get_size()
    if not same:
        node.Free()
        return None
    return node
