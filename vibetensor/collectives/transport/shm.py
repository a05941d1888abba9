"""``shm``: the ring's transport for CPU tensors when every rank of an MPI group is on one host.

MPI point-to-point on one host copies a message twice (into a shared cell, out of it) and the ring
then adds a third pass to reduce it. Here each rank owns an MPI shared-memory window (allocated once
per group) with slots per destination and a few counters:

  sender:   wait until the slot is free (the receiver's ack counter), copy the data into it,
            memory barrier (MPI_Win_sync), bump its ready counter for that destination;
  receiver: see the counter, barrier, and either copy the slot out (all-gather steps) or -- for the
            reduce-scatter steps -- reduce straight from the peer's slot into the result (no
            temporary), then bump its ack counter.

Waiting is polling host memory against the collective's deadline (never a blocking MPI call).
"""
from __future__ import annotations

import numpy as np

from .base import Handle, Transport
from . import reduce_kernels
from .mpi import mpi


class _Xfer(Handle):
    def __init__(self, tr, it):
        self.tr = tr
        self.it = it
        self.m_send = tr._next(tr.sent, it.dst) if it.send is not None else None
        self.m_recv = tr._next(tr.recvd, it.src) if it.recv is not None else None
        self.sent = it.send is None
        self.got = it.recv is None
        self.view = None     # peer slot to reduce from (reduce-scatter steps), until release()
        self.test()

    def test(self):
        tr, it = self.tr, self.it
        # publish in order too: the ready counter says "messages < k are in their slots"
        if (not self.sent and tr.published.get(it.dst, 0) == self.m_send
                and tr._ack_of(it.dst) > self.m_send - tr.nslots):
            slot = tr._slot(tr.rank, it.dst, self.m_send)
            slot[:it.send.nbytes] = it.send.view(np.uint8)
            tr.win.Sync()
            tr.flags[tr.rank][it.dst] = self.m_send + 1
            tr.published[it.dst] = self.m_send + 1
            self.sent = True
        # deliver in order: a later message must not ack (free) a slot whose view is still lent out
        if not self.got and tr.acked.get(it.src, 0) == self.m_recv and tr.flags[it.src][tr.rank] > self.m_recv:
            tr.win.Sync()
            slot = tr._slot(it.src, tr.rank, self.m_recv)[:it.recv.nbytes].view(it.recv.dtype)
            if getattr(it, "reduce_from_peer", False):
                self.view = slot
            else:
                it.recv[...] = slot
                self._ack()
            self.got = True
        return self.sent and self.got

    def _ack(self):
        tr = self.tr
        tr.win.Sync()
        tr.flags[tr.rank][tr.size + self.it.src] = self.m_recv + 1
        tr.acked[self.it.src] = self.m_recv + 1

    def release(self):
        if self.view is not None:
            self.view = None
            self._ack()


class ShmTransport(Transport):
    name = "shm"

    def __init__(self, comm, slot_bytes, nslots, deadline):
        from ..work import poll
        MPI = mpi()
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.local_ranks = [self.rank]
        self.max_segment_bytes = slot_bytes
        self.slot_bytes = slot_bytes + 256  # a segment may exceed the nominal size by an element
        self.nslots = nslots
        self.sent, self.recvd, self.acked, self.published = {}, {}, {}, {}
        n = self.size
        self.fbytes = 64 * (-(-(16 * n) // 64))
        total = self.fbytes + n * nslots * self.slot_bytes
        req = comm.Ibarrier()  # everyone is here, so the blocking window allocation cannot hang
        if not poll(req.Test, deadline):
            from ..errors import CollectiveTimeout
            raise CollectiveTimeout("shm: not every rank reached the shared-memory window set-up in time")
        self.win = MPI.Win.Allocate_shared(total, 1, comm=comm)
        self.win.Lock_all()  # one passive epoch: Win_sync is then a memory barrier
        self.mem, self.flags = {}, {}
        for q in range(n):
            buf, _ = self.win.Shared_query(q)
            m = np.frombuffer(buf, dtype=np.uint8)
            self.mem[q] = m
            self.flags[q] = m[:16 * n].view(np.int64)
        self.flags[self.rank][:] = 0
        self.win.Sync()
        req = comm.Ibarrier()  # every rank zeroed its counters before anyone reads them
        if not poll(req.Test, deadline):
            from ..errors import CollectiveTimeout
            raise CollectiveTimeout("shm: a rank left during the shared-memory window set-up")
        self.win.Sync()

    @staticmethod
    def _next(d, k):
        m = d.get(k, 0)
        d[k] = m + 1
        return m

    def _ack_of(self, dst):
        return int(self.flags[dst][self.size + self.rank])

    def _slot(self, owner, dst, m):
        off = self.fbytes + (dst * self.nslots + m % self.nslots) * self.slot_bytes
        return self.mem[owner][off:off + self.slot_bytes]

    def devices(self):
        from ...core.device import CPU
        return [CPU]

    def alloc(self, local, n, np_dtype, like=None):
        return np.empty((n,), dtype=np_dtype)

    def reduce_into(self, local, dst, src, op, scale=None):
        reduce_kernels.reduce_into(dst, src, op, scale)

    def post_sendrecv(self, items):
        if len(items) != 1:
            raise NotImplementedError("shm: one local rank per process")
        it = items[0]
        for a in (it.send, it.recv):
            if a is not None and a.nbytes > self.slot_bytes:
                raise ValueError(f"shm: a message of {a.nbytes} bytes exceeds the {self.slot_bytes}-byte slot")
        return _Xfer(self, it)

    def close(self):
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

