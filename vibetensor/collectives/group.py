"""ProcessGroup: the collectives on vt tensors, over a transport, with sequence numbers, events,
timeouts (naming the ranks that never joined) and debug fingerprints.

Tensor arguments: a group whose process drives one rank takes a Tensor where PyTorch does; a group
driving several local ranks (``local`` backend: one rank per device) takes a list with one entry per
local rank, in device order.
"""
from __future__ import annotations

import itertools
import threading
import time

import numpy as np

from .. import _env, observe
from ..core.tensor import Tensor
from ..observe import EventKind
from . import ring as _ring
from . import tuning
from .buffers import Flat, check_devices, check_same, check_tensor
from .errors import CollectiveError, CollectiveTimeout, GroupBrokenError
from .side import fingerprint
from .types import ReduceOp, as_reduce_op, effective_op
from .work import Executor, Work, poll

_ALGOS = ("auto", "ring", "native")
USE_SHM = True  # the ring over MPI groups on one host uses transport/shm.py (tests also run it without)


def _dump(reason):
    dump = getattr(observe, "dump", None)
    if dump is None:
        return None
    try:
        return dump(reason)
    except Exception as e:  # a failing dump must not hide the timeout
        observe.counter_add("collectives.dump_failed", 1)
        return f"(dump failed: {e})"


class ProcessGroup:
    def __init__(self, name, backend, host, *, side=None, p2p_comm=None, timeout=None, world_ranks=None,
                 device=None, device_transport_factory=None):
        self.name = name
        self.backend = backend
        self._host = host                      # transport for host (CPU) tensors
        self._side = side                      # SideChannel or None (single process)
        self._p2p_comm = p2p_comm
        self._timeout = timeout
        self._world_ranks = list(world_ranks) if world_ranks is not None else list(range(host.size))
        self._ranks_t = tuple(self._world_ranks)
        self._device = device                  # this process's CUDA device (multi-process) or None
        self._dev_factory = device_transport_factory
        self._dev_transport = None
        self._shm_comm = None                  # set when every rank shares this host (the ring's shm path)
        self._shm = None
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._broken = None
        self._exec = Executor(name)

    # ------------------------------------------------------------------ basic facts
    def size(self) -> int:
        return self._host.size

    def rank(self) -> int:
        return self._host.local_ranks[0]

    @property
    def local_ranks(self):
        return list(self._host.local_ranks)

    @property
    def world_ranks(self):
        return list(self._world_ranks)

    def group_rank(self, global_rank: int) -> int:
        try:
            return self._world_ranks.index(global_rank)
        except ValueError:
            raise ValueError(f"rank {global_rank} is not a member of group {self.name!r} "
                             f"(members: {self._world_ranks})") from None

    def timeout(self, override=None) -> float:
        if override is not None:
            t = override.total_seconds() if hasattr(override, "total_seconds") else float(override)
        elif self._timeout is not None:
            t = self._timeout
        else:
            t = _env.flags().collective_timeout
        if t <= 0:
            raise ValueError(f"collective timeout must be positive seconds, got {t}")
        return t

    def __repr__(self):
        return f"<ProcessGroup {self.name!r} backend={self.backend} size={self.size()} rank={self.rank()}>"

    # ------------------------------------------------------------------ plumbing
    def _transport(self, ts, opname):
        """The transport for these tensors (host for CPU, the device transport for CUDA)."""
        dev = ts[0].device
        for t in ts[1:]:
            if t.device.type != dev.type:
                raise CollectiveError(f"{opname}: mixing {dev} and {t.device} tensors in one call")
        if dev.type == "cpu":
            tr = self._host
            devs = tr.devices()
            if devs[0].type != "cpu":
                raise CollectiveError(f"{opname}: group {self.name!r} ({self.backend}) drives {devs}; "
                                      f"got a CPU tensor")
            if len(devs) > 1 or devs[0].index is not None:
                check_devices(ts, devs, opname, self.backend)
            return tr
        if self._host.name == "local":
            if self._host.devices()[0].type != "cuda":
                raise CollectiveError(f"{opname}: group {self.name!r} (local) drives {self._host.devices()}; got a "
                                      f"tensor on {dev}: move it to the group's devices")
            check_devices(ts, self._host.devices(), opname, self.backend)
            if self._dev_factory is None:
                return self._host  # peer copies between this process's GPUs
        else:
            if self._device is not None:
                check_devices(ts, [self._device], opname, self.backend)
            if self._dev_factory is None:
                return self._host  # mpi backend: CUDA-aware MPI or staged through pinned host memory
        with self._lock:
            if self._dev_transport is None:
                # set-up talks over the data communicator: let queued async work finish first so every
                # rank issues the same sequence on it
                self._exec.drain(self.timeout())
                self._dev_transport = self._dev_factory(self, ts[0].device)
        return self._dev_transport

    def _per_local(self, x, opname, what="tensor"):
        n = self._host.n_local
        if n == 1:
            if isinstance(x, (list, tuple)):
                if len(x) == 1 and isinstance(x[0], Tensor):
                    x = x[0]
                else:
                    raise TypeError(f"{opname}: {what} must be one Tensor for a group with one rank per process")
            check_tensor(x, opname, what)
            return [x]
        if not isinstance(x, (list, tuple)) or len(x) != n:
            raise TypeError(f"{opname}: group {self.name!r} drives {n} local ranks (devices); pass {what} as a "
                            f"list of {n} tensors, one per device in order")
        for t in x:
            check_tensor(t, opname, what)
        return list(x)

    def _check_broken(self):
        if self._broken is not None:
            raise GroupBrokenError(f"group {self.name!r} is unusable: {self._broken}. Create a new group "
                                   f"(or re-initialise) before issuing more collectives on it")

    def _timeout_error(self, seq, coll, t, op=None, phase=""):
        tr = self._dev_transport or self._host
        missing, seen = ([], {})
        if self._side is not None:
            try:
                missing, seen = self._side.missing(seq)
            except Exception:
                missing, seen = [], {}
        self._broken = f"collective #{seq} ({coll}) timed out"
        try:
            tr.on_timeout()
        except Exception:
            pass
        observe.record(EventKind.COLLECTIVE_TIMEOUT, coll, group=self.name, coll_seq=seq, state="timeout",
                       op=None if op is None else op.value)
        observe.counter_add("collectives.timeouts", 1)
        dumped = _dump(f"collective timeout: group {self.name} #{seq} {coll}")
        if self._side is None:
            who = "(single-process group: a device transfer did not complete)"
        elif missing:
            lw = [self._world_ranks[r] for r in missing]
            who = (f"ranks {missing} did not join" + (f" (world ranks {lw})" if lw != missing else "") +
                   "; last collective each reported: " +
                   ", ".join(f"rank {r}: {'#' + str(seen[r]) if r in seen else 'none'}" for r in missing))
        else:
            who = "every rank reported reaching it (a transport stall, or a rank that left it early)"
        raise CollectiveTimeout(
            f"{coll} (collective #{seq} of group {self.name!r}{', op=' + op.value if op is not None else ''}) "
            f"timed out after {t:g} s on rank {self.rank()}{phase}: {who}. Check that every rank issues the same "
            f"collectives in the same order; raise the limit with timeout= or VT_COLLECTIVE_TIMEOUT."
            + (f" Event ring dumped: {dumped}" if isinstance(dumped, str) else ""),
            group=self.name, seq=seq, op=coll, missing=missing, last_seen=seen, timeout=t)

    def _run(self, coll, body, *, async_op, timeout, ts=(), op=None, root=None, fp_shape=None, outputs=None,
             tr=None):
        """Issue one collective: sequence number, events, debug fingerprint, deadline, executor."""
        self._check_broken()
        seq = next(self._seq)
        t = self.timeout(timeout)
        t0 = ts[0] if ts else None
        nbytes = sum(x.nbytes for x in ts) if ts else 0
        dev = str(t0.device) if t0 is not None else None
        dt = t0.dtype.name if t0 is not None else None
        ev = dict(group=self.name, coll_seq=seq, op=None if op is None else op.value, dtype=dt,
                  count=sum(x.numel() for x in ts) if ts else 0, nbytes=nbytes, device=dev, peer=root,
                  ranks=self._ranks_t, group_size=len(self._ranks_t))  # lets vt-trace name absent ranks
        observe.record(EventKind.COLLECTIVE_ENQUEUE, coll, state="enqueued", **ev)
        side = self._side
        debug = _env.flags().debug_collectives and side is not None

        def fn():
            self._check_broken()
            deadline = time.monotonic() + t
            start = time.perf_counter_ns()
            observe.record(EventKind.COLLECTIVE_START, coll, state="started", **ev)
            if side is not None:
                side.drain()
            if debug:
                fp = fingerprint(seq, coll, op, t0.dtype if t0 is not None else None, root,
                                 fp_shape if fp_shape is not None else (tuple(t0.shape) if t0 is not None else ()))
                side.check_fingerprint(fp, deadline, self.name,
                                       lambda: self._timeout_error(seq, coll, t, op, " (debug fingerprint exchange)"))
            slow_at = time.monotonic() + min(0.25, t / 4)

            def wait(h):
                if h.test():
                    return
                if not poll(h.test, deadline, (lambda: side.reached(seq)) if side is not None else None, slow_at):
                    h.abort()
                    self._timeout_error(seq, coll, t, op)

            try:
                body(wait)
            except CollectiveTimeout:
                raise
            except Exception as e:
                observe.record(EventKind.COLLECTIVE_ERROR, coll, state="error", **ev)
                if not isinstance(e, (TypeError, ValueError, CollectiveError)):
                    self._broken = f"collective #{seq} ({coll}) failed: {type(e).__name__}: {e}"
                raise
            observe.record(EventKind.COLLECTIVE_COMPLETE, coll, state="completed",
                           duration_ns=time.perf_counter_ns() - start, **ev)

        if not async_op:  # no Work object (and no threading.Event) for the common synchronous call
            return self._exec.run(fn)
        return self._exec.submit(Work(coll, seq, self.name, fn, outputs), True)

    # ------------------------------------------------------------------ collectives
    def all_reduce(self, tensor, op=ReduceOp.SUM, async_op=False, timeout=None, algorithm="auto"):
        ts = self._per_local(tensor, "all_reduce")
        check_same(ts, "all_reduce")
        rop = as_reduce_op(op)
        eop = effective_op(rop, ts[0].dtype, "all_reduce")
        if algorithm not in _ALGOS:
            raise ValueError(f"all_reduce: unknown algorithm {algorithm!r}; use one of {', '.join(_ALGOS)}")
        tr = self._transport(ts, "all_reduce")
        algo = algorithm
        if algo == "auto":
            key = tr.name
            if tr is self._host and self._shm_comm is not None and USE_SHM and ts[0].device.type == "cpu":
                key = "shm"
            algo = tuning.pick(key, tr.size, ts[0].nbytes)
        if algo == "native" and tr.name == "ipc":
            algo = "ring"  # CUDA IPC has no library collective: our ring is its native all_reduce

        def body(wait):
            fl = [Flat(x) for x in ts]
            bufs = [f.arr for f in fl]
            if algo == "ring":
                rt = self._ring_transport(tr, bufs)
                _ring.ring_allreduce(rt, bufs, eop, wait, order=_ring.ring_order(rt))
            else:
                wait(tr.native_allreduce(bufs, eop))
            for f in fl:
                f.commit()
        return self._run("all_reduce", body, async_op=async_op, timeout=timeout, ts=ts, op=rop,
                         outputs=ts if len(ts) > 1 else ts[0])

    def _ring_transport(self, tr, bufs):
        """Host arrays of an all-on-one-host MPI group ride our shared-memory transport (fewer copies
        than MPI point-to-point); everything else uses ``tr``."""
        if tr is not self._host or self._shm_comm is None or not USE_SHM or type(bufs[0]) is not np.ndarray:
            return tr  # (CUDA arrays stay on ``tr``)
        if self._shm is None:
            from .transport.shm import ShmTransport
            self._shm = ShmTransport(self._shm_comm, _ring.SEGMENT_BYTES, _ring.DEPTH + 1,
                                     time.monotonic() + self.timeout())
        return self._shm

    def broadcast(self, tensor, src=0, async_op=False, timeout=None):
        ts = self._per_local(tensor, "broadcast")
        check_same(ts, "broadcast")
        root = self._root(src, "broadcast", "src")
        tr = self._transport(ts, "broadcast")

        def body(wait):
            fl = [Flat(x) for x in ts]
            wait(tr.native_broadcast([f.arr for f in fl], root))
            for i, f in enumerate(fl):
                if tr.local_ranks[i] != root:
                    f.commit()
        return self._run("broadcast", body, async_op=async_op, timeout=timeout, ts=ts, root=root,
                         outputs=ts if len(ts) > 1 else ts[0])

    def _root(self, r, opname, what):
        if not isinstance(r, int) or isinstance(r, bool):
            raise TypeError(f"{opname}: {what} must be an int rank, got {r!r}")
        if self._side is None:  # single process: ranks are the group's device ranks
            if not 0 <= r < self.size():
                raise ValueError(f"{opname}: {what}={r} is outside group {self.name!r} of size {self.size()}")
            return r
        return self.group_rank(r)

    def all_gather_into_tensor(self, output_tensor, input_tensor, async_op=False, timeout=None):
        outs = self._per_local(output_tensor, "all_gather_into_tensor", "output_tensor")
        ins = self._per_local(input_tensor, "all_gather_into_tensor", "input_tensor")
        check_same(ins, "all_gather_into_tensor")
        n = self.size()
        for o, i in zip(outs, ins):
            if o.numel() != n * i.numel() or o.dtype is not i.dtype:
                raise ValueError(f"all_gather_into_tensor: output has {o.numel()} elements ({o.dtype.name}) but "
                                 f"must hold world_size * input = {n} * {i.numel()} elements of {i.dtype.name}")
        tr = self._transport(ins + outs, "all_gather_into_tensor")

        def body(wait):
            fo = [Flat(o) for o in outs]
            fi = [Flat(i) for i in ins]
            c = fi[0].arr.size
            if tr.name == "ipc" or not hasattr(tr, "native_allgather"):
                for li, r in enumerate(tr.local_ranks):
                    fo[li].arr[r * c:(r + 1) * c] = fi[li].arr
                _ring.ring(tr, [f.arr for f in fo], ReduceOp.SUM, wait, ("ag",), _ring.ring_order(tr))
            else:
                wait(tr.native_allgather([f.arr for f in fi], [f.arr for f in fo]))
            for f in fo:
                f.commit()
        return self._run("all_gather_into_tensor", body, async_op=async_op, timeout=timeout, ts=ins,
                         outputs=outs if len(outs) > 1 else outs[0])

    def all_gather(self, tensor_list, tensor, async_op=False, timeout=None):
        ins = self._per_local(tensor, "all_gather")
        lists = [tensor_list] if self._host.n_local == 1 else list(tensor_list)
        n = self.size()
        if len(lists) != len(ins) or any(not isinstance(lst, (list, tuple)) or len(lst) != n for lst in lists):
            raise ValueError(f"all_gather: tensor_list must hold world_size={n} tensors"
                             + ("" if len(ins) == 1 else f" for each of the {len(ins)} local ranks"))
        for lst, i in zip(lists, ins):
            for o in lst:
                check_tensor(o, "all_gather", "tensor_list entry")
                if tuple(o.shape) != tuple(i.shape) or o.dtype is not i.dtype:
                    raise ValueError(f"all_gather: every output must match the input's shape {tuple(i.shape)} and "
                                     f"dtype {i.dtype.name}; got {tuple(o.shape)} {o.dtype.name}")
        from ..core import factories as F
        flat = [F.empty((n * i.numel(),), dtype=i.dtype, device=i.device) for i in ins]
        inner = self.all_gather_into_tensor(flat if len(ins) > 1 else flat[0], ins if len(ins) > 1 else ins[0],
                                            async_op=True, timeout=timeout)

        def finish():
            inner.wait()
            for f, lst in zip(flat, lists):
                c = f.numel() // n
                for r, o in enumerate(lst):
                    o._data[...] = f._data[r * c:(r + 1) * c].reshape(o._data.shape)
                    o._vc.v += 1
        return self._finish_async(inner, finish, async_op, "all_gather")

    def _finish_async(self, inner, finish, async_op, name):
        if not async_op:
            finish()
            return None
        w = Work(name, inner.seq, self.name)
        w._poll = lambda block, timeout=None: (finish() or True) if (block or inner.is_completed()) else False
        return w

    def reduce_scatter_tensor(self, output, input, op=ReduceOp.SUM, async_op=False, timeout=None):
        outs = self._per_local(output, "reduce_scatter_tensor", "output")
        ins = self._per_local(input, "reduce_scatter_tensor", "input")
        check_same(ins, "reduce_scatter_tensor")
        rop = as_reduce_op(op)
        eop = effective_op(rop, ins[0].dtype, "reduce_scatter_tensor")
        n = self.size()
        for o, i in zip(outs, ins):
            if i.numel() != n * o.numel() or o.dtype is not i.dtype:
                raise ValueError(f"reduce_scatter_tensor: input has {i.numel()} elements ({i.dtype.name}) but must "
                                 f"hold world_size * output = {n} * {o.numel()} elements of {o.dtype.name}")
        tr = self._transport(ins + outs, "reduce_scatter_tensor")

        def body(wait):
            fo = [Flat(o) for o in outs]
            fi = [Flat(i, need_copy=True) for i in ins]
            c = fo[0].arr.size
            if tr.name == "ipc" or not hasattr(tr, "native_reduce_scatter"):
                _ring.ring(tr, [f.arr for f in fi], eop, wait, ("rs",), _ring.ring_order(tr))
                for li, r in enumerate(tr.local_ranks):
                    fo[li].arr[...] = fi[li].arr[r * c:(r + 1) * c]
            else:
                wait(tr.native_reduce_scatter([f.arr for f in fi], [f.arr for f in fo], eop))
            for f in fo:
                f.commit()
        return self._run("reduce_scatter_tensor", body, async_op=async_op, timeout=timeout, ts=ins, op=rop,
                         outputs=outs if len(outs) > 1 else outs[0])

    def reduce_scatter(self, output, input_list, op=ReduceOp.SUM, async_op=False, timeout=None):
        outs = self._per_local(output, "reduce_scatter", "output")
        lists = [input_list] if self._host.n_local == 1 else list(input_list)
        n = self.size()
        if len(lists) != len(outs) or any(not isinstance(lst, (list, tuple)) or len(lst) != n for lst in lists):
            raise ValueError(f"reduce_scatter: input_list must hold world_size={n} tensors"
                             + ("" if len(outs) == 1 else f" for each of the {len(outs)} local ranks"))
        from ..core import functional as _f  # noqa: F401
        from ..core.dispatcher import ops
        cat = []
        for o, lst in zip(outs, lists):
            for x in lst:
                check_tensor(x, "reduce_scatter", "input_list entry")
                if tuple(x.shape) != tuple(o.shape) or x.dtype is not o.dtype:
                    raise ValueError(f"reduce_scatter: every input must match the output's shape {tuple(o.shape)} "
                                     f"and dtype {o.dtype.name}; got {tuple(x.shape)} {x.dtype.name}")
            cat.append(ops.vt.cat([x.detach().reshape(-1) for x in lst], 0))
        return self.reduce_scatter_tensor(outs if len(outs) > 1 else outs[0], cat if len(cat) > 1 else cat[0],
                                          op=op, async_op=async_op, timeout=timeout)

    def reduce(self, tensor, dst=0, op=ReduceOp.SUM, async_op=False, timeout=None):
        ts = self._per_local(tensor, "reduce")
        check_same(ts, "reduce")
        root = self._root(dst, "reduce", "dst")
        rop = as_reduce_op(op)
        eop = effective_op(rop, ts[0].dtype, "reduce")
        tr = self._transport(ts, "reduce")

        def body(wait):
            fl = [Flat(x, need_copy=(tr.name == "ipc")) for x in ts]
            if tr.name == "ipc":  # no native reduce: ring all_reduce on copies, keep the root's
                _ring.ring_allreduce(tr, [f.arr for f in fl], eop, wait, order=_ring.ring_order(tr))
            else:
                wait(tr.native_reduce([f.arr for f in fl], eop, root))
            for i, f in enumerate(fl):
                if tr.local_ranks[i] == root:
                    f.commit()
        return self._run("reduce", body, async_op=async_op, timeout=timeout, ts=ts, op=rop, root=root,
                         outputs=ts if len(ts) > 1 else ts[0])

    def barrier(self, async_op=False, timeout=None):
        def body(wait):
            wait(self._host.native_barrier())
        return self._run("barrier", body, async_op=async_op, timeout=timeout)

    # ------------------------------------------------------------------ point to point
    def _p2p(self, kind, tensor, peer, tag, timeout):
        from .p2p import post_p2p
        return post_p2p(self, kind, tensor, peer, tag, timeout)

    def isend(self, tensor, dst, tag=0, timeout=None):
        return self._p2p("send", tensor, dst, tag, timeout)

    def irecv(self, tensor, src=None, tag=0, timeout=None):
        return self._p2p("recv", tensor, src, tag, timeout)

    def send(self, tensor, dst, tag=0, timeout=None):
        self.isend(tensor, dst, tag, timeout).wait()

    def recv(self, tensor, src=None, tag=0, timeout=None):
        w = self.irecv(tensor, src, tag, timeout)
        w.wait()
        return w.source

    # ------------------------------------------------------------------ lifetime
    def synchronize(self, timeout=None):
        """Wait for this group's outstanding async work."""
        return self._exec.drain(timeout)

    def destroy(self):
        self._exec.drain(5.0)
        self._exec.close()
        for tr in (self._dev_transport, self._shm, self._host):
            if tr is not None:
                try:
                    tr.close()
                except Exception:
                    pass
        self._broken = self._broken or "destroyed"
