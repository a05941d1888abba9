"""``nccl`` transport: CUDA tensors through ``cupy.cuda.nccl``.

One communicator per local device (the unique id travels over MPI with a nonblocking broadcast, so
a missing rank times out instead of hanging; several local devices use ncclCommInitAll and NCCL
group calls). Work runs on a dedicated communication stream per device, ordered after the compute
stream with a CUDA event; the compute stream then waits on the collective's completion event, so no
host synchronisation is needed -- except where a caller waits for completion (timeouts poll the
event against the deadline). On timeout the communicators are aborted (a hung NCCL kernel never
returns otherwise).
"""
from __future__ import annotations

import time

import numpy as np

from ...core import backend as _be
from ..types import ReduceOp
from .base import Handle, Transport
from . import reduce_kernels


def _nccl():
    _be.cupy_module()
    from cupy.cuda import nccl  # noqa: PLC0415 - optional, GPU only
    return nccl


def nccl_dtype(np_dtype):
    nc = _nccl()
    name = np.dtype(np_dtype).name
    table = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "int32": "NCCL_INT32",
             "int64": "NCCL_INT64", "uint8": "NCCL_UINT8", "bfloat16": "NCCL_BFLOAT16"}
    attr = table.get(name)
    if attr is None or not hasattr(nc, attr):
        raise TypeError(f"nccl: dtype {name} is not supported by this NCCL/CuPy build")
    return getattr(nc, attr)


def nccl_op(op):
    nc = _nccl()
    if op is ReduceOp.AVG:
        return getattr(nc, "NCCL_AVG", None)  # None: SUM then scale (NCCL < 2.10)
    return {ReduceOp.SUM: nc.NCCL_SUM, ReduceOp.PRODUCT: nc.NCCL_PROD, ReduceOp.MIN: nc.NCCL_MIN,
            ReduceOp.MAX: nc.NCCL_MAX}[op]


class _Events(Handle):
    stream_ordered = True  # later work on the same streams is ordered after it without a host wait

    def __init__(self, events, keep=None, then=None):
        self.events = events
        self.keep = keep      # arrays that must live until the GPU is done with them
        self.then = then
        self.finished = False

    def test(self):
        if self.finished:
            return True
        if not all(e.done for e in self.events):
            return False
        if self.then is not None:
            self.then()
        self.keep = None
        self.finished = True
        return True


class NCCLTransport(Transport):
    name = "nccl"

    def __init__(self, comms, devices, local_ranks, size):
        self.comms = comms
        self._devices = list(devices)
        self.local_ranks = list(local_ranks)
        self.size = size
        cp = _be.cupy_module()
        self.streams = []
        for d in self._devices:
            with cp.cuda.Device(d.index):
                self.streams.append(cp.cuda.Stream(non_blocking=True))
        self._aborted = False

    def devices(self):
        return list(self._devices)

    def global_devices(self):
        return list(getattr(self, "_global_devs", self._devices))

    def alloc(self, local, n, np_dtype, like=None):
        cp = _be.cupy_module()
        with cp.cuda.Device(self._devices[local].index):
            return cp.empty((n,), dtype=np_dtype)

    def reduce_into(self, local, dst, src, op, scale=None):
        cp = _be.cupy_module()
        with cp.cuda.Device(self._devices[local].index), self.streams[local]:
            reduce_kernels.reduce_into(dst, src, op, scale)

    # ---------------------------------------------------------------- stream plumbing
    def _launch(self, fn, keep=None, then=None, group=None, post=None):
        """Order comm streams after compute, run ``fn(i, comm, stream)`` per local device (inside an NCCL
        group when there are several), then order compute after the comm streams."""
        if self._aborted:
            from ..errors import GroupBrokenError
            raise GroupBrokenError("nccl: communicators were aborted after a timeout")
        cp = _be.cupy_module()
        nc = _nccl()
        for i, d in enumerate(self._devices):
            with cp.cuda.Device(d.index):
                ev = cp.cuda.Event(disable_timing=True)
                ev.record(cp.cuda.get_current_stream())
                self.streams[i].wait_event(ev)
        grouped = group if group is not None else len(self._devices) > 1
        if grouped:
            nc.groupStart()
        try:
            for i, d in enumerate(self._devices):
                with cp.cuda.Device(d.index):
                    fn(i, self.comms[i], self.streams[i])
        finally:
            if grouped:
                nc.groupEnd()
        if post is not None:
            post()  # e.g. AVG scaling, on the comm streams before the completion events
        events = []
        for i, d in enumerate(self._devices):
            with cp.cuda.Device(d.index):
                done = cp.cuda.Event(disable_timing=True)
                done.record(self.streams[i])
                cp.cuda.get_current_stream().wait_event(done)
                events.append(done)
        return _Events(events, keep, then)

    def _avg_fix(self, op, bufs):
        if op is ReduceOp.AVG and nccl_op(op) is None:
            cp = _be.cupy_module()
            for i, b in enumerate(bufs):
                with cp.cuda.Device(self._devices[i].index), self.streams[i]:
                    reduce_kernels.scale_inplace(b, 1.0 / self.size)

    def _op(self, op):
        o = nccl_op(op)
        return _nccl().NCCL_SUM if o is None else o

    # ---------------------------------------------------------------- point to point (the ring)
    def post_sendrecv(self, items):
        by_local = {}
        for it in items:
            by_local.setdefault(it.local, []).append(it)

        def fn(i, comm, s):
            for it in by_local.get(i, ()):
                if it.send is not None:
                    comm.send(it.send.data.ptr, it.send.size, nccl_dtype(it.send.dtype), it.dst, s.ptr)
                if it.recv is not None:
                    comm.recv(it.recv.data.ptr, it.recv.size, nccl_dtype(it.recv.dtype), it.src, s.ptr)
        return self._launch(fn, keep=items, group=True)

    def post_p2p(self, kind, arr, peer, tag, comm_unused=None):
        if peer is None:
            raise NotImplementedError("recv from any source over NCCL: pass src=")
        if tag:
            raise NotImplementedError("tags over NCCL: send/recv are matched in order per peer; use tag=0")

        def fn(i, comm, s):
            if kind == "send":
                comm.send(arr.data.ptr, arr.size, nccl_dtype(arr.dtype), peer, s.ptr)
            else:
                comm.recv(arr.data.ptr, arr.size, nccl_dtype(arr.dtype), peer, s.ptr)
        h = self._launch(fn, keep=[arr], group=True)
        h.source = peer
        return h

    # ---------------------------------------------------------------- native collectives
    def native_allreduce(self, bufs, op):
        def fn(i, comm, s):
            b = bufs[i]
            comm.allReduce(b.data.ptr, b.data.ptr, b.size, nccl_dtype(b.dtype), self._op(op), s.ptr)
        return self._launch(fn, keep=bufs, post=lambda: self._avg_fix(op, bufs))

    def native_broadcast(self, bufs, root):
        def fn(i, comm, s):
            b = bufs[i]
            comm.broadcast(b.data.ptr, b.data.ptr, b.size, nccl_dtype(b.dtype), root, s.ptr)
        return self._launch(fn, keep=bufs)

    def native_allgather(self, sends, recvs):
        def fn(i, comm, s):
            comm.allGather(sends[i].data.ptr, recvs[i].data.ptr, sends[i].size, nccl_dtype(sends[i].dtype), s.ptr)
        return self._launch(fn, keep=sends + recvs)

    def native_reduce_scatter(self, sends, recvs, op):
        def fn(i, comm, s):
            comm.reduceScatter(sends[i].data.ptr, recvs[i].data.ptr, recvs[i].size, nccl_dtype(recvs[i].dtype),
                               self._op(op), s.ptr)
        return self._launch(fn, keep=sends + recvs, post=lambda: self._avg_fix(op, recvs))

    def native_reduce(self, bufs, op, root):
        def fn(i, comm, s):
            b = bufs[i]
            comm.reduce(b.data.ptr, b.data.ptr, b.size, nccl_dtype(b.dtype), self._op(op), root, s.ptr)
        return self._launch(fn, keep=bufs, post=lambda: self._avg_fix(
            op, [bufs[i] if r == root else bufs[i][:0] for i, r in enumerate(self.local_ranks)]))

    def fence(self):
        """Order the compute streams after everything queued on the comm streams (the ring's last
        reductions); the handle completes when the GPU got there."""
        return self._launch(lambda i, comm, s: None, group=False)

    def native_barrier(self):
        one = [self.alloc(i, 1, np.float32) for i in range(len(self._devices))]
        return self.native_allreduce(one, ReduceOp.SUM)

    def on_timeout(self):
        self._aborted = True
        for c in self.comms:
            try:
                c.abort()
            except Exception:
                pass

    def close(self):
        if not self._aborted:
            for c in self.comms:
                try:
                    c.destroy()
                except Exception:
                    pass


def make_nccl(group, dev):
    """Device-transport factory for a ProcessGroup (called on its first CUDA collective)."""
    nc = _nccl()
    host = group._host
    if host.name == "local":  # one process, several devices: ncclCommInitAll
        devs = host.devices()
        comms = nc.NcclCommunicator.initAll([d.index for d in devs])
        return NCCLTransport(comms, devs, list(range(len(devs))), len(devs))
    from .mpi import mpi
    MPI = mpi()
    uid = np.zeros(128, dtype=np.int8)
    as_bytes = True
    if host.rank == 0:
        raw = nc.get_unique_id()  # bytes in CuPy 14, a tuple of ints in older CuPy
        as_bytes = isinstance(raw, (bytes, bytearray))
        uid[:] = np.frombuffer(bytes(raw), dtype=np.int8) if as_bytes else \
            np.array(raw, dtype=np.int64).astype(np.int8)
    from ..work import poll
    req = host.comm.Ibcast([uid, MPI.SIGNED_CHAR], root=0)
    if not poll(req.Test, time.monotonic() + group.timeout()):
        from ..errors import CollectiveTimeout
        raise CollectiveTimeout(f"nccl: group {group.name!r}: not every rank reached the NCCL communicator "
                                f"set-up (the first CUDA collective) within {group.timeout():g} s", group=group.name)
    ids = np.zeros(host.size, dtype=np.int64)
    req = host.comm.Iallgather([np.array([dev.index], dtype=np.int64), MPI.INT64_T], [ids, MPI.INT64_T])
    if not poll(req.Test, time.monotonic() + group.timeout()):
        from ..errors import CollectiveTimeout
        raise CollectiveTimeout(f"nccl: group {group.name!r}: device exchange timed out", group=group.name)
    cp = _be.cupy_module()
    with cp.cuda.Device(dev.index):
        try:
            comm = nc.NcclCommunicator(host.size, uid.tobytes(), host.rank)
        except TypeError:  # older CuPy takes the id as a tuple of ints
            comm = nc.NcclCommunicator(host.size, tuple(int(x) for x in uid), host.rank)
    tr = NCCLTransport([comm], [dev], [host.rank], host.size)
    from ...core.device import Device
    tr._global_devs = [Device("cuda", int(i)) for i in ids]
    return tr
