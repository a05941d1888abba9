"""``mpi`` transport: mpi4py on host arrays; device arrays go straight to MPI only when it is
CUDA-aware, otherwise they are staged through pinned host memory (a CuPy pointer handed to a
non-CUDA-aware MPI segfaults). Every call is nonblocking (Isend/Irecv/Iallreduce...) so the
caller can poll it against a deadline."""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from ...core import backend as _be
from ... import observe
from ..types import ReduceOp
from .base import Handle, Transport
from . import reduce_kernels

RING_TAG = 7001


_MPI = None


def mpi():
    global _MPI
    if _MPI is None:
        from mpi4py import MPI  # noqa: PLC0415 - optional dependency, imported on first use
        _MPI = MPI
    return _MPI


@functools.lru_cache(maxsize=1)
def cuda_aware() -> bool:
    """True when the loaded MPI library says it can take CUDA device pointers.

    Open MPI (and MPICH >= 4) export ``MPIX_Query_cuda_support()``; MPICH also has
    ``MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA, &flag)``. Missing symbols mean no.
    """
    mpi()
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "libmpi" in p and p not in libs:
                    libs.append(p)
    except OSError:
        return False
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        fn = getattr(lib, "MPIX_GPU_query_support", None)
        if fn is not None:
            flag = ctypes.c_int(0)
            if fn(ctypes.c_int(0), ctypes.byref(flag)) == 0:  # MPIX_GPU_SUPPORT_CUDA == 0
                return bool(flag.value)
        fn = getattr(lib, "MPIX_Query_cuda_support", None)
        if fn is not None:
            fn.restype = ctypes.c_int
            return bool(fn())
    return False


_TYPES: dict = {}
_OPS: dict = {}


def mpi_type(np_dtype):
    if not _TYPES:
        MPI = mpi()
        _TYPES.update({np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE,
                       np.dtype(np.int32): MPI.INT32_T, np.dtype(np.int64): MPI.INT64_T,
                       np.dtype(np.uint8): MPI.UINT8_T})
    return _TYPES.get(np_dtype)


def mpi_op(op):
    if not _OPS:
        MPI = mpi()
        _OPS.update({ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                     ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX})
    return _OPS[op]


class Requests(Handle):
    def __init__(self, reqs, then=None):
        self.reqs = reqs
        self.then = then
        self.finished = False

    def test(self):
        if self.finished:
            return True
        reqs = self.reqs
        if reqs and not (reqs[0].Test() if len(reqs) == 1 else _MPI.Request.Testall(reqs)):
            return False
        if self.then is not None:
            self.then()
        self.finished = True
        return True

    def abort(self):
        for r in self.reqs:
            try:
                r.Cancel()
            except Exception:  # sends and collectives cannot always be cancelled; they are leaked
                pass


def _bytes(arr):
    return [arr.reshape(-1).view(np.uint8), mpi().BYTE]


class MPITransport(Transport):
    name = "mpi"

    def __init__(self, comm, device=None):
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.local_ranks = [self.rank]
        self._device = device
        self._devs = None

    def devices(self):
        if self._devs is None:
            from ...core.device import CPU
            self._devs = [self._device or CPU]
        return self._devs

    # ---------------------------------------------------------------- host staging for device arrays
    def _host(self, arr, copy_in=True):
        """(host array, write-back function or None)."""
        if not _be.is_cuda_array(arr):
            return arr, None
        if cuda_aware():
            _be.cupy_module().cuda.get_current_stream().synchronize()
            return arr, None
        observe.counter_add("collectives.mpi.staged_bytes", int(arr.nbytes))
        _be.cupy_module()  # a clear error when CUDA is gone
        import cupyx  # noqa: PLC0415
        host = cupyx.empty_pinned(arr.shape, dtype=arr.dtype)
        if copy_in:
            arr.get(out=host)
        return host, (lambda: arr.set(host))

    def alloc(self, local, n, np_dtype, like=None):
        if like is not None and _be.is_cuda_array(like):  # CUDA tensors over MPI (staged or CUDA-aware)
            cp = _be.cupy_module()
            with cp.cuda.Device(like.device.id):
                return cp.empty((n,), dtype=np_dtype)
        return np.empty((n,), dtype=np_dtype)

    def reduce_into(self, local, dst, src, op, scale=None):
        reduce_kernels.reduce_into(dst, src, op, scale)

    # ---------------------------------------------------------------- point to point
    def post_sendrecv(self, items, tag=RING_TAG, comm=None):
        comm = comm or self.comm
        reqs, backs = [], []
        for it in items:
            if it.recv is not None:
                h, wb = self._host(it.recv, copy_in=False)
                reqs.append(comm.Irecv(_bytes(h), source=it.src, tag=tag))
                if wb:
                    backs.append(wb)
            if it.send is not None:
                h, _ = self._host(it.send)  # the request keeps a staged buffer alive until it completes
                reqs.append(comm.Isend(_bytes(h), dest=it.dst, tag=tag))
        return Requests(reqs, (lambda: [b() for b in backs]) if backs else None)

    # ---------------------------------------------------------------- native collectives
    def _reduce_buf(self, buf, op):
        """(host array MPI can reduce, MPI datatype, write-back) with fp16/bf16 upcast to float32."""
        h, wb = self._host(buf)
        t = mpi_type(h.dtype)
        if t is None:  # float16 / bfloat16: MPI has no such type; reduce in float32
            observe.counter_add("collectives.mpi.upcast_native", 1)
            up = h.astype(np.float32)
            inner = wb

            def wb2(h=h, up=up, inner=inner):
                h[...] = up.astype(h.dtype)
                if inner:
                    inner()
            return up, mpi().FLOAT, wb2
        return h, t, wb

    def native_allreduce(self, bufs, op):
        MPI = mpi()
        h, t, wb = self._reduce_buf(bufs[0], op)
        req = self.comm.Iallreduce(MPI.IN_PLACE, [h, t], mpi_op(op))

        def then():
            if op is ReduceOp.AVG:
                reduce_kernels.scale_inplace(h, 1.0 / self.size)
            if wb:
                wb()
        return Requests([req], then)

    def native_broadcast(self, bufs, root):
        h, wb = self._host(bufs[0], copy_in=(self.rank == root))
        return Requests([self.comm.Ibcast(_bytes(h), root=root)], wb)

    def native_allgather(self, sends, recvs):
        hs, _ = self._host(sends[0])
        hr, wb = self._host(recvs[0], copy_in=False)
        return Requests([self.comm.Iallgather(_bytes(hs), _bytes(hr))], wb)

    def native_reduce_scatter(self, sends, recvs, op):
        hs, t, _ = self._reduce_buf(sends[0], op)
        hr, t2, wb = self._reduce_buf(recvs[0], op)
        req = self.comm.Ireduce_scatter_block([hs, t], [hr, t2], mpi_op(op))

        def then():
            if op is ReduceOp.AVG:
                reduce_kernels.scale_inplace(hr, 1.0 / self.size)
            if wb:
                wb()
        return Requests([req], then)

    def native_reduce(self, bufs, op, root):
        MPI = mpi()
        h, t, wb = self._reduce_buf(bufs[0], op)
        if self.rank == root:
            req = self.comm.Ireduce(MPI.IN_PLACE, [h, t], mpi_op(op), root=root)

            def then():
                if op is ReduceOp.AVG:
                    reduce_kernels.scale_inplace(h, 1.0 / self.size)
                if wb:
                    wb()
            return Requests([req], then)
        return Requests([self.comm.Ireduce([h, t], None, mpi_op(op), root=root)])

    def native_barrier(self):
        return Requests([self.comm.Ibarrier()])


class _P2P(Handle):
    def __init__(self, req, then=None):
        self.req = req
        self.then = then
        self.status = mpi().Status()
        self.finished = False
        self.source = None

    def test(self):
        if self.finished:
            return True
        if not self.req.Test(self.status):
            return False
        self.source = self.status.Get_source()
        if self.then is not None:
            self.then()
        self.finished = True
        return True

    def abort(self):
        try:
            self.req.Cancel()
        except Exception:
            pass


def _post_p2p(self, kind, arr, peer, tag, comm):
    MPI = mpi()
    if kind == "send":
        h, _ = self._host(arr)
        return _P2P(comm.Isend(_bytes(h), dest=peer, tag=tag))
    h, wb = self._host(arr, copy_in=False)
    return _P2P(comm.Irecv(_bytes(h), source=MPI.ANY_SOURCE if peer is None else peer, tag=tag), wb)


MPITransport.post_p2p = _post_p2p
