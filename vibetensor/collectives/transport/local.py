"""``local`` transport: every rank of the group is a device inside this process.

Virtual CPU devices (VT_CPU_DEVICES=N) move bytes with plain numpy copies. CUDA devices use peer
copies (cudaMemcpyAsync through UVA/peer access) on the source device's current stream, ordered
against the destination's stream with CUDA events in both directions, so no host sync is needed.
"""
from __future__ import annotations

import numpy as np

from ...core import backend as _be
from ..types import ReduceOp
from .base import DONE, Handle, Transport
from . import reduce_kernels


class _CudaSync(Handle):
    """Complete when the recorded events are (host polling only where a caller waits)."""

    def __init__(self, events):
        self.events = events

    def test(self):
        return all(e.done for e in self.events)


class LocalTransport(Transport):
    name = "local"

    def __init__(self, devices):
        self._devices = list(devices)
        self.size = len(self._devices)
        self.local_ranks = list(range(self.size))
        self.cuda = self._devices[0].type == "cuda"
        if any(d.type != self._devices[0].type for d in self._devices):
            raise ValueError(f"local transport: devices must all be CPU or all CUDA, got {self._devices}")

    def devices(self):
        return list(self._devices)

    def global_devices(self):
        return list(self._devices)  # every rank is here: Fabric can order the ring along NVLink

    def alloc(self, local, n, np_dtype, like=None):
        d = self._devices[local]
        if d.type == "cuda":
            cp = _be.cupy_module()
            with cp.cuda.Device(d.index):
                return cp.empty((n,), dtype=np_dtype)
        return np.empty((n,), dtype=np_dtype)

    def reduce_into(self, local, dst, src, op, scale=None):
        with _be.device_guard(self._devices[local]):
            reduce_kernels.reduce_into(dst, src, op, scale)

    # ---------------------------------------------------------------- copies
    def _copy(self, dl, dst, sl, src):
        if dst.size == 0:
            return
        if not self.cuda:
            dst[...] = src
            return
        cp = _be.cupy_module()
        ddev, sdev = self._devices[dl].index, self._devices[sl].index
        with cp.cuda.Device(ddev):
            dstream = cp.cuda.get_current_stream()
            ready = cp.cuda.Event(disable_timing=True)
            ready.record(dstream)  # the destination's earlier reads/writes of dst
        with cp.cuda.Device(sdev):
            sstream = cp.cuda.get_current_stream()
            sstream.wait_event(ready)
            dst.data.copy_from_device_async(src.data, src.nbytes, sstream)
            done = cp.cuda.Event(disable_timing=True)
            done.record(sstream)
        with cp.cuda.Device(ddev):
            dstream.wait_event(done)

    def _done(self):
        if not self.cuda:
            return DONE
        cp = _be.cupy_module()
        evs = []
        for d in self._devices:
            with cp.cuda.Device(d.index):
                e = cp.cuda.Event(disable_timing=True)
                e.record()
                evs.append(e)
        return _CudaSync(evs)

    def post_sendrecv(self, items):
        sends = {(it.local, it.dst): it.send for it in items if it.send is not None}
        for it in items:
            if it.recv is None:
                continue
            src = sends.get((it.src, it.local))
            if src is None:
                raise RuntimeError(f"local transport: rank {it.local} receives from {it.src}, which posted no "
                                   f"matching send in the same batch")
            self._copy(it.local, it.recv, it.src, src)
        return DONE  # stream-ordered on CUDA; immediate on CPU

    # ---------------------------------------------------------------- native collectives
    def _reduce_all(self, bufs, op, into):
        """The reduction of ``bufs`` on device ``into``. On CPU it accumulates in place into
        ``bufs[into]`` (no temporaries: every caller overwrites that buffer with the result anyway)."""
        scale = 1.0 / self.size if op is ReduceOp.AVG else None
        if not self.cuda:
            acc = bufs[into]
            others = [i for i in range(self.size) if i != into]
            for k, i in enumerate(others):
                reduce_kernels.reduce_into(acc, bufs[i], op, scale if k == len(others) - 1 else None)
            return acc
        acc = self.alloc(into, bufs[0].size, bufs[0].dtype)
        self._copy(into, acc, 0, bufs[0])
        tmp = self.alloc(into, bufs[0].size, bufs[0].dtype) if self.size > 1 else None
        for i in range(1, self.size):
            self._copy(into, tmp, i, bufs[i])
            self.reduce_into(into, acc, tmp, op, scale if i == self.size - 1 else None)
        return acc

    def native_allreduce(self, bufs, op):
        acc = self._reduce_all(bufs, op, 0)
        for i in range(self.size):
            if bufs[i] is not acc:
                self._copy(i, bufs[i], 0, acc)
        return self._done()

    def native_reduce(self, bufs, op, root):
        acc = self._reduce_all(bufs, op, root)
        if acc is not bufs[root]:
            self._copy(root, bufs[root], root, acc)
        return self._done()

    def native_broadcast(self, bufs, root):
        for i in range(self.size):
            if i != root:
                self._copy(i, bufs[i], root, bufs[root])
        return self._done()

    def native_allgather(self, sends, recvs):
        c = sends[0].size
        for j in range(self.size):
            for i in range(self.size):
                self._copy(j, recvs[j][i * c:(i + 1) * c], i, sends[i])
        return self._done()

    def native_reduce_scatter(self, sends, recvs, op):
        c = recvs[0].size
        for j in range(self.size):
            acc = self._reduce_all([s[j * c:(j + 1) * c] for s in sends], op, j)  # sends are copies
            self._copy(j, recvs[j], j, acc)
        return self._done()

    def native_barrier(self):
        return self._done()
