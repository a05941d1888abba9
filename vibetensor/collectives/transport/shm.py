"""``shm``: the ring's transport for CPU tensors when every rank of an MPI group is on one host.

Each rank owns an MPI shared-memory window (allocated once per group) with counters, descriptors and
data slots per peer. Two kinds of message, each in order per peer:

  reduce-scatter steps (the item has ``op``), through slots: the sender waits until the slot is free
      (the receiver's ack counter), copies its data in, memory barrier (MPI_Win_sync), bumps its
      ready counter; the receiver sees it, barrier, reduces straight from the peer's slot into the
      result (one ufunc pass, no temporary), barrier, acks.
  all-gather steps, pushed (when ``process_vm_writev`` works between the ranks, see cma.py): the
      receiver publishes where the data must land (address, length of its own buffer) and bumps a
      request counter; the sender copies straight into it with one syscall and bumps a done counter.
      One copy instead of two (into a slot, out of it): 7 passes over each rank's chunk per all_reduce
      instead of 9 at 2 ranks. Without cma (``self.push`` False), and for messages under
      ``PUSH_MIN_BYTES``, these go through the slots too, copied out instead of reduced.

A send that cannot go yet (slot busy, no request yet) waits in a backlog that every ``test()``
advances. Waiting is polling host memory against the collective's deadline (never a blocking MPI
call). Per segment this is a handful of Python operations: slot views are made once, counters are
read through an int64 memoryview (a plain load, no numpy scalar).
"""
from __future__ import annotations

import collections
import os

import numpy as np

from ... import observe
from .base import Handle, Transport
from .cma import Writer
from .mpi import mpi
from .reduce_kernels import host_reduce_into

USE_CMA = True  # tests turn it off to run the all-copy protocol on machines where cma works
# Smaller all-gather messages go through the slots even with cma: they stay in L2, where the extra
# copy costs less than the push's request round trip and syscall (2-core VM: 4 KiB all_reduce 37 us
# through slots vs 48 us pushed; 1 MiB, i.e. 512 KiB messages, even; 2 MiB 415 vs 341 us).
PUSH_MIN_BYTES = 512 << 10


class _Xfer(Handle):
    __slots__ = ("dst", "m_recv", "m_send", "op", "pull", "push", "recv", "scale", "src", "tr")

    def __init__(self, tr, it):
        self.tr, self.dst, self.recv, self.src, self.op, self.scale = tr, it.dst, it.recv, it.src, it.op, it.scale
        # the kind of a message follows from its size, which sender and receiver agree on
        big = tr.push and it.op is None
        self.pull = big and it.recv is not None and it.recv.nbytes >= PUSH_MIN_BYTES  # our recv is pushed to us
        self.push = big and it.send is not None and it.send.nbytes >= PUSH_MIN_BYTES  # we push our send
        if it.recv is not None:  # first: a push request is cheap and lets the peer start copying
            if self.pull:
                self.m_recv = tr._request(it.recv, it.src)
            else:
                self.m_recv = tr.nrecv[it.src]
                tr.nrecv[it.src] += 1
        self.m_send = tr._send(it.send, it.dst, self.push) if it.send is not None else -1
        self.test()

    def test(self):
        tr = self.tr
        if tr.backlog:
            tr._flush()
        if self.recv is not None:
            if self.pull:
                if tr.flags[self.src][tr.P + tr.rank] <= self.m_recv:
                    return False
                tr.win.Sync()  # the pushed data is complete before its counter
                del tr.requested[(self.src, self.m_recv)]
            elif not tr._take(self):
                return False
            self.recv = None
        return self.m_send < (tr.pushed if self.push else tr.published)[self.dst]

    def abort(self):
        self.tr.abandon()


class ShmTransport(Transport):
    name = "shm"
    reduces_on_recv = True

    def __init__(self, comm, slot_bytes, nslots, deadline):
        MPI = mpi()
        self.comm = comm
        self.size = n = comm.Get_size()
        self.rank = me = comm.Get_rank()
        self.local_ranks = [me]
        self.max_segment_bytes = slot_bytes
        self.slot_bytes = sb = slot_bytes + 256  # a segment may exceed the nominal size by an element
        self.nslots = nslots
        self.max_depth = nslots - 1  # the ring's window: a slot/descriptor is reused only once it is free
        self.nsend, self.nrecv = [0] * n, [0] * n        # slot messages, numbered per peer
        self.published, self.consumed = [0] * n, [0] * n
        self.psend, self.precv, self.pushed = [0] * n, [0] * n, [0] * n  # pushed messages
        self.backlog = collections.deque()  # (push, dst, m, array): sends that cannot go yet, in order
        self.requested = {}                  # (src, m) -> buffer a peer was told to push into
        self.abandoned = []                  # such buffers of a failed call, kept alive (see abandon)
        # int64 meta of rank q: [ready for dst | acks of slot messages from src | push requests to src |
        # pushes done to dst | pid, window address, cma ok, - | push descriptors (address, nbytes) per
        # (src, slot)], n entries per section
        self.R, self.P, self.D = 2 * n, 3 * n, 4 * n + 4
        self.fbytes = 64 * (-(-8 * (self.D + 2 * n * nslots) // 64))
        self._barrier(deadline, "never reached the shared-memory window set-up")  # the allocation cannot hang
        self.win = MPI.Win.Allocate_shared(self.fbytes + n * nslots * sb, 1, comm=comm)
        # one passive epoch (Win_sync is then a memory barrier); NOCHECK: no lock messages, so
        # Unlock_all in close() is local and cannot wait on a peer that has already moved on
        self.win.Lock_all(MPI.MODE_NOCHECK)
        mem = [np.frombuffer(self.win.Shared_query(q)[0], dtype=np.uint8) for q in range(n)]
        self.flags = [memoryview(m[:self.fbytes]).cast("B").cast("q") for m in mem]
        self.mine = self.flags[me]

        def slot(owner, dst, i):
            off = self.fbytes + (dst * nslots + i) * sb
            return mem[owner][off:off + sb]
        self.out = [[slot(me, q, i) for i in range(nslots)] for q in range(n)]  # mine, toward q
        self.inn = [[slot(q, me, i) for i in range(nslots)] for q in range(n)]  # q's, toward me
        for i in range(self.D):
            self.mine[i] = 0
        self.mine[4 * n], self.mine[4 * n + 1] = os.getpid(), mem[me].ctypes.data
        self.win.Sync()
        self._barrier(deadline, "left during the shared-memory window set-up")  # counters zeroed everywhere
        self.win.Sync()
        # push only when every rank can write to every peer (all ranks must run the same protocol)
        self.writer = Writer()
        self.pids = [self.flags[q][4 * n] for q in range(n)]
        ok = USE_CMA and all(q == me or self.writer.probe(self.pids[q], self.flags[q][4 * n + 1] + 32 * n, self.pids[q])
                             for q in range(n))  # rewrite each peer's own pid field in its address space
        self.mine[4 * n + 2] = int(ok)
        self.win.Sync()
        self._barrier(deadline, "left during the shared-memory window set-up")
        self.win.Sync()
        self.push = all(self.flags[q][4 * n + 2] for q in range(n))
        if not self.push:
            observe.counter_add("collectives.shm.no_cma", 1)  # all-gather steps copy twice

    def _barrier(self, deadline, what):
        from ..work import poll
        req = self.comm.Ibarrier()
        if not poll(req.Test, deadline):
            from ..errors import CollectiveTimeout
            raise CollectiveTimeout(f"shm: a rank {what} in time")

    # ---------------------------------------------------------------- the protocol
    def _send(self, arr, dst, push):
        seq = self.psend if push else self.nsend
        m = seq[dst]
        seq[dst] = m + 1
        if self.backlog or not (self._push if push else self._publish)(dst, m, arr):
            self.backlog.append((push, dst, m, arr))
        return m

    def _flush(self):
        q = self.backlog
        while q:
            push, dst, m, arr = q[0]
            if not (self._push if push else self._publish)(dst, m, arr):
                return
            q.popleft()

    def _publish(self, dst, m, arr):
        if self.flags[dst][self.size + self.rank] <= m - self.nslots:
            return False  # the receiver still reads that slot
        self.out[dst][m % self.nslots][:arr.nbytes].view(arr.dtype)[...] = arr
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

    def _request(self, recv, src):
        m = self.precv[src]
        if self.flags[src][self.P + self.rank] <= m - self.nslots:  # max_depth rules this out
            raise RuntimeError(f"shm: push descriptor {m % self.nslots} for rank {src} is still in use")
        self.precv[src] = m + 1
        d = self.D + 2 * (src * self.nslots + m % self.nslots)
        self.mine[d], self.mine[d + 1] = recv.ctypes.data, recv.nbytes
        self.requested[(src, m)] = recv
        self.win.Sync()  # descriptor before counter
        self.mine[self.R + src] = m + 1
        return m

    def _push(self, dst, m, arr):
        fl = self.flags[dst]
        if fl[self.R + self.rank] <= m:
            return False  # the receiver has not said where yet
        self.win.Sync()  # counter before descriptor
        d = self.D + 2 * (self.rank * self.nslots + m % self.nslots)
        if fl[d + 1] != arr.nbytes:  # not a CollectiveError: the group must count as broken after this
            self.abandon()
            raise RuntimeError(f"shm: rank {dst} expects {fl[d + 1]} bytes where rank {self.rank} sends "
                               f"{arr.nbytes}; did every rank pass a tensor of the same size and dtype?")
        self.writer.write(self.pids[dst], fl[d], arr.ctypes.data, arr.nbytes)
        self.win.Sync()  # data before counter
        self.mine[self.P + dst] = m + 1
        self.pushed[dst] = m + 1
        return True

    def abandon(self):
        """A call failed (timeout, error): a late peer may still push into the buffers it was given, so
        keep them alive (their memory is never reused for anything else); the group is broken anyway."""
        self.abandoned.extend(self.requested.values())
        self.requested.clear()

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
