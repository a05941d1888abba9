"""``ipc`` transport: the GPUs of one host across processes, through CUDA IPC (several ranks may share
one GPU, which NCCL refuses).

Set-up (once per group, over MPI with a deadline): each rank allocates an exchange buffer of
``nslots`` slots OUTSIDE CuPy's memory pool (``cudaMalloc``: a pool sub-allocation's IPC handle would
name the whole pool block) and an interprocess CUDA event, and all ranks exchange both handles and open
their peers'.

A transfer of message m from A to B (slot m % nslots of A's buffer):
  A: wait for B's ack of message m - nslots (slot free), make A's stream wait on B's event, copy the
     data into the slot, record A's event, send B a tiny MPI "ready m" message;
  B: on "ready m", make B's stream wait on A's event, copy the slot into the receive buffer, record B's
     event, send A "ack m".
Data moves by device copies on each rank's stream; MPI carries only tiny, nonblocking control messages
(so every wait is pollable against the collective's deadline). Reductions run on the same stream
(one fused kernel per received chunk), so they are ordered after the copies without host syncs.
"""
from __future__ import annotations

import time

import numpy as np

from ...core import backend as _be
from .. import ring as _ring
from .base import Handle, SendRecv, Transport
from . import reduce_kernels

READY_TAG = 8101
ACK_TAG = 8102
_EVENT_FLAGS = 0x02 | 0x04  # cudaEventDisableTiming | cudaEventInterprocess
_D2D = 4                    # cudaMemcpyDefault (UVA: same or peer device)
_NOT_READY = 600            # cudaErrorNotReady


class _Xfer(Handle):
    """One post_sendrecv batch (this process drives one rank): a small state machine driven by test()."""

    def __init__(self, tr, send, dst, recv, src):
        self.tr = tr
        self.send, self.dst, self.recv, self.src = send, dst, recv, src
        self.m_send = tr._next_send(dst) if send is not None else None
        self.m_recv = tr._next_recv(src) if recv is not None else None
        self.sent = send is None
        self.got = recv is None
        self.ready_req = None
        self.buf = np.zeros(1, dtype=np.int64)
        if recv is not None:
            self.ready_req = tr.comm.Irecv([self.buf, tr.MPI.INT64_T], source=src, tag=READY_TAG)

    def test(self):
        tr = self.tr
        tr._drain_acks()
        # strictly in order per peer: a later message must neither overtake an earlier one into the
        # slots nor be acknowledged (freeing slots) before an earlier one was copied out
        if (not self.sent and tr.published.get(self.dst, 0) == self.m_send
                and tr.acked.get(self.dst, -1) >= self.m_send - tr.nslots):
            tr._push(self.send, self.dst, self.m_send)
            tr.published[self.dst] = self.m_send + 1
            self.sent = True
        if not self.got and tr.pulled.get(self.src, 0) == self.m_recv and self.ready_req.Test():
            tr._pull(self.recv, self.src, int(self.buf[0]))
            tr.pulled[self.src] = self.m_recv + 1
            self.got = True
        return self.sent and self.got

    def abort(self):
        if self.ready_req is not None and not self.got:
            try:
                self.ready_req.Cancel()
            except Exception:
                pass


class _Gen(Handle):
    """A multi-step operation written as a generator yielding handles."""

    def __init__(self, gen):
        self.gen = gen
        self.cur = None
        self.finished = False

    def test(self):
        while not self.finished:
            if self.cur is not None and not self.cur.test():
                return False
            try:
                self.cur = next(self.gen)
            except StopIteration:
                self.finished = True
        return True


class IPCTransport(Transport):
    name = "ipc"

    def __init__(self, host, comm, dev, slot_bytes, nslots, deadline):
        from .mpi import mpi
        cp = _be.cupy_module()
        self.MPI = mpi()
        self.host = host
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.local_ranks = [self.rank]
        self.dev = dev
        self.max_segment_bytes = slot_bytes
        self.slot_bytes = slot_bytes + 256  # a segment may exceed the nominal size by an element
        self.nslots = nslots
        self.sends, self.recvs, self.acked, self.published, self.pulled = {}, {}, {}, {}, {}
        self._ack_buf = np.zeros(1, dtype=np.int64)
        self._ack_reqs = []
        rt = cp.cuda.runtime
        with cp.cuda.Device(dev.index):
            self.stream = cp.cuda.Stream(non_blocking=True)
            # slots per destination, outside the pool (a pool block's IPC handle names the whole block)
            self.xbuf = rt.malloc(self.slot_bytes * nslots * self.size)
            self.event = rt.eventCreateWithFlags(_EVENT_FLAGS)
            mine = np.frombuffer(rt.ipcGetMemHandle(self.xbuf) + rt.ipcGetEventHandle(self.event)
                                 + np.array([dev.index], dtype=np.int64).tobytes(), dtype=np.uint8)
        allh = np.zeros((self.size, mine.size), dtype=np.uint8)
        req = comm.Iallgather([mine, self.MPI.BYTE], [allh, self.MPI.BYTE])
        from ..work import poll
        if not poll(req.Test, deadline):
            from ..errors import CollectiveTimeout
            raise CollectiveTimeout("ipc: not every rank reached the CUDA IPC handle exchange in time")
        from ...core.device import Device
        self._global_devs = [Device("cuda", int(allh[r, 128:136].view(np.int64)[0])) for r in range(self.size)]
        self.peer_buf, self.peer_event = {}, {}
        with cp.cuda.Device(dev.index):
            for r in range(self.size):
                if r == self.rank:
                    continue
                h = bytes(allh[r])
                self.peer_buf[r] = rt.ipcOpenMemHandle(h[:64])
                self.peer_event[r] = rt.ipcOpenEventHandle(h[64:128])

    def devices(self):
        return [self.dev]

    def global_devices(self):
        return list(self._global_devs)  # distinct GPUs: Fabric orders the ring along NVLink

    def alloc(self, local, n, np_dtype, like=None):
        cp = _be.cupy_module()
        with cp.cuda.Device(self.dev.index):
            return cp.empty((n,), dtype=np_dtype)

    def reduce_into(self, local, dst, src, op, scale=None):
        cp = _be.cupy_module()
        with cp.cuda.Device(self.dev.index), self.stream:
            reduce_kernels.reduce_into(dst, src, op, scale)

    # ---------------------------------------------------------------- protocol
    def _next_send(self, dst):
        m = self.sends.get(dst, 0)
        self.sends[dst] = m + 1
        return m

    def _next_recv(self, src):
        m = self.recvs.get(src, 0)
        self.recvs[src] = m + 1
        return m

    def _drain_acks(self):
        st = self.MPI.Status()
        while self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=ACK_TAG, status=st):
            src = st.Get_source()
            self.comm.Recv([self._ack_buf, self.MPI.INT64_T], source=src, tag=ACK_TAG)
            self.acked[src] = max(self.acked.get(src, -1), int(self._ack_buf[0]))

    def _notify(self, peer, m, tag):
        self._ack_reqs = [r for r in self._ack_reqs if not r.Test()]
        msg = np.array([m], dtype=np.int64)
        self._ack_reqs.append(self.comm.Isend([msg, self.MPI.INT64_T], dest=peer, tag=tag))

    def _push(self, arr, dst, m):
        cp = _be.cupy_module()
        rt = cp.cuda.runtime
        if arr.nbytes > self.slot_bytes:
            raise ValueError(f"ipc: a message of {arr.nbytes} bytes exceeds the {self.slot_bytes}-byte slot")
        with cp.cuda.Device(self.dev.index):
            if m >= self.nslots:  # the slot's previous reader finished its copy
                rt.streamWaitEvent(self.stream.ptr, self.peer_event[dst], 0)
            slot = self.xbuf + (dst * self.nslots + m % self.nslots) * self.slot_bytes
            rt.memcpyAsync(slot, arr.data.ptr, arr.nbytes, _D2D, self.stream.ptr)
            rt.eventRecord(self.event, self.stream.ptr)
        self._notify(dst, m, READY_TAG)

    def _pull(self, arr, src, m):
        cp = _be.cupy_module()
        rt = cp.cuda.runtime
        with cp.cuda.Device(self.dev.index):
            rt.streamWaitEvent(self.stream.ptr, self.peer_event[src], 0)
            slot = self.peer_buf[src] + (self.rank * self.nslots + m % self.nslots) * self.slot_bytes
            rt.memcpyAsync(arr.data.ptr, slot, arr.nbytes, _D2D, self.stream.ptr)
            rt.eventRecord(self.event, self.stream.ptr)
        self._notify(src, m, ACK_TAG)

    def _order_after_compute(self):
        cp = _be.cupy_module()
        with cp.cuda.Device(self.dev.index):
            ev = cp.cuda.Event(disable_timing=True)
            ev.record(cp.cuda.get_current_stream())
            self.stream.wait_event(ev)

    # ---------------------------------------------------------------- interface
    def post_sendrecv(self, items):
        if len(items) != 1:
            raise NotImplementedError("ipc: one local rank per process")
        it = items[0]
        self._order_after_compute()
        return _Xfer(self, it.send, it.dst, it.recv, it.src)

    def fence(self):
        cp = _be.cupy_module()
        with cp.cuda.Device(self.dev.index):
            done = cp.cuda.Event(disable_timing=True)
            done.record(self.stream)
            cp.cuda.get_current_stream().wait_event(done)
        ev = done

        class _H(Handle):
            def test(self_inner):
                return ev.done
        return _H()

    def _segments(self, n, itemsize):
        per = max(1, self.max_segment_bytes // itemsize)
        return [(a, min(n, a + per)) for a in range(0, n, per)] or [(0, 0)]

    def native_broadcast(self, bufs, root):
        """Chain root -> root+1 -> ... in slot-sized segments."""
        x = bufs[0]
        order = _ring.ring_order(self)
        pos = {r: i for i, r in enumerate(order)}
        rp = pos[root]
        chain = [order[(rp + i) % self.size] for i in range(self.size)]
        me = chain.index(self.rank)

        def gen():
            pending = []
            for a, b in self._segments(x.size, x.dtype.itemsize):
                if b <= a:
                    continue
                if me > 0:
                    yield self.post_sendrecv([SendRecv(0, None, -1, x[a:b], chain[me - 1])])
                if me < self.size - 1:
                    pending.append(self.post_sendrecv([SendRecv(0, x[a:b], chain[me + 1], None, -1)]))
            for h in pending:
                yield h
            yield self.fence()
        return _Gen(gen())

    def post_p2p(self, kind, arr, peer, tag, comm):
        # user send/recv: staged through the host MPI transport (counted; not the collective fast path)
        from ... import observe
        observe.counter_add("collectives.ipc.p2p_via_mpi", 1)
        return self.host.post_p2p(kind, arr, peer, tag, comm)

    def native_barrier(self):
        return self.host.native_barrier()

    def close(self):
        cp = _be.cupy_module()
        rt = cp.cuda.runtime
        try:
            with cp.cuda.Device(self.dev.index):
                self.stream.synchronize()
                for p in self.peer_buf.values():
                    rt.ipcCloseMemHandle(p)
                rt.free(self.xbuf)
        except Exception:
            pass


def make_ipc(group, dev):
    from .mpi import mpi
    from ..work import poll
    host = group._host
    deadline = time.monotonic() + group.timeout()
    req = host.comm.Ibarrier()
    if not poll(req.Test, deadline):
        from ..errors import CollectiveTimeout
        raise CollectiveTimeout(f"ipc: group {group.name!r}: not every rank reached the CUDA IPC set-up (the first "
                                f"CUDA collective) within {group.timeout():g} s", group=group.name)
    mpi()
    comm = host.comm.Dup()
    return IPCTransport(host, comm, dev, _ring.SEGMENT_BYTES, max(2, _ring.DEPTH), deadline)
