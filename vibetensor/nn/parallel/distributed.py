"""DistributedDataParallel: gradients reduced in buckets while backward runs.

* At wrap, parameters and buffers are broadcast from rank 0 (every replica starts equal).
* Parameters are grouped into buckets (<= bucket_cap_mb, one dtype/device each) in reverse
  registration order, the order backward produces their gradients. A post-accumulate-grad hook
  copies each gradient into its bucket; a full bucket is launched as an async all_reduce at once
  (buckets launch in index order on every rank, so collectives match), while backward continues.
  The hook that launches the last bucket waits for all of them and writes the averaged gradients
  back into ``.grad``: when ``loss.backward()`` returns, gradients are synchronised.
* ``no_sync()`` skips the reduction (gradients accumulate locally; the next synced backward
  reduces the accumulated sum). ``find_unused_parameters=True`` walks the autograd graph after
  forward and marks parameters it cannot reach as ready (their bucket slot holds zeros).
* Multi-process: ``module`` is this rank's replica; gradients are averaged over ranks.
  Single-process multi-device (a ``local`` group over several devices): ``module`` lives on the first
  device, replicas are made on the others (refreshed from it at every forward), the input batch is
  split along ``dim`` across them and outputs are gathered on the first device; device gradients
  are summed (the loss already averages over the whole batch) and divided by the process count.
"""
from __future__ import annotations

import contextlib
import copy

from ... import collectives as _c
from ...core.grad_mode import is_grad_enabled, no_grad
from ...core.tensor import Tensor
from ..module import Module


class _Bucket:
    __slots__ = ("index", "params", "offsets", "numel", "dtype", "bufs", "pending", "ready", "work")

    def __init__(self, index, params, dtype):
        self.index = index
        self.params = params          # [(param index, [param per replica])]
        self.offsets = []
        n = 0
        for _, ps in params:
            self.offsets.append(n)
            n += ps[0].numel()
        self.numel = n
        self.dtype = dtype
        self.bufs = None
        self.pending = 0
        self.ready = False
        self.work = None


class DistributedDataParallel(Module):
    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a vt.nn.Module, got {type(module).__name__}")
        if bucket_cap_mb is None or bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        pg = _c.default_group() if process_group is None else process_group
        if pg is _c.NON_GROUP_MEMBER:
            raise _c.CollectiveError("DistributedDataParallel: this rank is not a member of process_group")
        object.__setattr__(self, "process_group", pg)
        object.__setattr__(self, "_n_local", len(pg.local_ranks))
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.bucket_cap_mb = bucket_cap_mb
        self.device_ids = device_ids
        self.output_device = output_device
        self.require_backward_grad_sync = True
        self._devices = pg._host.devices() if self._n_local > 1 else None
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("DistributedDataParallel: the module has no parameters that require gradients")
        self._check_devices(params)
        replicas = [module]
        if self._n_local > 1:
            for d in self._devices[1:]:
                replicas.append(copy.deepcopy(module).to(d))
        object.__setattr__(self, "_replicas", replicas)
        self._params = [[p for p in r.parameters() if p.requires_grad] for r in replicas]
        self._sync_at_wrap()
        self._buckets = self._make_buckets(bucket_cap_mb)
        self._where = {}
        for b in self._buckets:
            for slot, (pi, _) in enumerate(b.params):
                self._where[pi] = (b, slot)
        self._hooks = []
        for ri, ps in enumerate(self._params):
            for pi, p in enumerate(ps):
                self._hooks.append(p.register_post_accumulate_grad_hook(self._make_hook(ri, pi)))
        self._next_launch = 0
        self._armed = False       # an iteration's reduction is expected (set by forward)
        self._unfinished = False  # the previous backward did not reduce every bucket

    # ------------------------------------------------------------------ setup
    def _check_devices(self, params):
        if self._n_local > 1:
            d0 = self._devices[0]
            for p in params:
                if p.device != d0:
                    raise _c.CollectiveError(
                        f"DistributedDataParallel (single-process over {len(self._devices)} devices): the module "
                        f"must be on the first device {d0}, but a parameter is on {p.device}; call module.to('{d0}')")
        elif self.process_group._device is not None:
            for p in params:
                if p.device != self.process_group._device:
                    raise _c.CollectiveError(
                        f"DistributedDataParallel: a parameter is on {p.device} but this rank's device is "
                        f"{self.process_group._device}; call module.to('{self.process_group._device}') first")

    def _sync_at_wrap(self):
        with no_grad():
            if self._n_local == 1:
                for t in list(self.module.parameters()) + list(self.module.buffers()):
                    self.process_group.broadcast(t, src=self.process_group.world_ranks[0])
            else:
                self._refresh_replicas(buffers=True)

    def _refresh_replicas(self, buffers):
        src = list(self.module.parameters()) + (list(self.module.buffers()) if buffers else [])
        for r in self._replicas[1:]:
            dst = list(r.parameters()) + (list(r.buffers()) if buffers else [])
            for s, d in zip(src, dst):
                d._data[...] = s.to(d.device)._data
                d._vc.v += 1

    def _make_buckets(self, cap_mb):
        cap = int(cap_mb * (1 << 20))
        order = list(range(len(self._params[0])))[::-1]  # backward produces the last layers first
        buckets, cur, cur_bytes, cur_dt = [], [], 0, None
        for pi in order:
            ps = [rep[pi] for rep in self._params]
            p = ps[0]
            if cur and (p.dtype is not cur_dt or cur_bytes + p.nbytes > cap):
                buckets.append(_Bucket(len(buckets), cur, cur_dt))
                cur, cur_bytes = [], 0
            cur.append((pi, ps))
            cur_bytes += p.nbytes
            cur_dt = p.dtype
        if cur:
            buckets.append(_Bucket(len(buckets), cur, cur_dt))
        from ...core import factories as F
        for b in buckets:
            devs = self._devices or [b.params[0][1][0].device]
            b.bufs = [F.zeros((b.numel,), dtype=b.dtype, device=d) for d in devs]
        return buckets

    # ------------------------------------------------------------------ iteration state
    def _arm(self, outputs):
        if self._unfinished:
            raise _c.CollectiveError(
                "DistributedDataParallel: the previous backward did not produce gradients for every parameter, so "
                "its gradient reduction never finished (some parameters were unused in forward). Pass "
                "find_unused_parameters=True, or make every parameter take part in the loss")
        for b in self._buckets:
            b.pending = len(b.params) * self._n_local
            b.ready = False
            b.work = None
            for buf in b.bufs:
                buf._data[...] = 0
        self._next_launch = 0
        self._armed = True
        if self.find_unused_parameters:
            used = _reachable_leaves(outputs)
            for ri, ps in enumerate(self._params):
                for pi, p in enumerate(ps):
                    if id(p) not in used:
                        self._mark_ready(ri, pi, copy_grad=False)

    def _make_hook(self, ri, pi):
        def hook(p):
            if not self._armed or not self.require_backward_grad_sync:
                return
            self._mark_ready(ri, pi, copy_grad=True)
        return hook

    def _mark_ready(self, ri, pi, copy_grad):
        b, slot = self._where[pi]
        if copy_grad:
            self._unfinished = True  # backward started: it must reduce every bucket
            p = self._params[ri][pi]
            off = b.offsets[slot]
            b.bufs[ri]._data[off:off + p.numel()] = p.grad._data.reshape(-1)
        b.pending -= 1
        if b.pending == 0:
            b.ready = True
            self._launch_ready()

    def _launch_ready(self):
        pg = self.process_group
        while self._next_launch < len(self._buckets) and self._buckets[self._next_launch].ready:
            b = self._buckets[self._next_launch]
            arg = b.bufs if self._n_local > 1 else b.bufs[0]
            avg = self._n_local == 1 and b.dtype.is_floating_point  # local: device grads are partial sums
            b.work = pg.all_reduce(arg, op=_c.ReduceOp.AVG if avg else _c.ReduceOp.SUM, async_op=True)
            self._next_launch += 1
        if self._next_launch == len(self._buckets):
            self._finish()

    def _finish(self):
        """All buckets launched: wait for them (in order) and write averaged gradients back."""
        self._armed = False
        nproc = self.process_group.size() // self._n_local
        for b in self._buckets:
            b.work.wait()
            if self._n_local > 1 and nproc > 1:
                for buf in b.bufs:
                    buf._data *= 1.0 / nproc
            for slot, (pi, ps) in enumerate(b.params):
                off = b.offsets[slot]
                for ri, p in enumerate(ps):
                    if ri > 0:  # replicas: the first device's module carries the synchronised gradient
                        p.grad = None
                        continue
                    view = b.bufs[ri]._data[off:off + p.numel()].reshape(p._data.shape)
                    if self.gradient_as_bucket_view:
                        g = Tensor._make(view, p.device)
                        p.grad = g
                    elif p.grad is None:
                        p.grad = Tensor._make(view.copy(), p.device)
                    else:
                        p.grad._data[...] = view
                        p.grad._vc.v += 1
        self._unfinished = False

    # ------------------------------------------------------------------ forward
    @contextlib.contextmanager
    def no_sync(self):
        """Gradients accumulate locally inside; the first synced backward after reduces the sum."""
        prev = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = prev

    def forward(self, *inputs, **kwargs):
        sync = is_grad_enabled() and self.require_backward_grad_sync
        if self._n_local == 1:
            if self.broadcast_buffers and is_grad_enabled() and self.module.training:
                with no_grad():
                    for t in self.module.buffers():
                        self.process_group.broadcast(t, src=self.process_group.world_ranks[0])
            out = self.module(*inputs, **kwargs)
        else:
            out = self._forward_local(inputs, kwargs)
        if sync:
            self._arm(out)
        return out

    def _forward_local(self, inputs, kwargs):
        with no_grad():
            self._refresh_replicas(buffers=self.broadcast_buffers)
        k = self._n_local
        per_dev = [[] for _ in range(k)]
        for x in inputs:
            if isinstance(x, Tensor):
                if x.shape[self.dim] < k:
                    raise ValueError(f"DistributedDataParallel: batch dimension {self.dim} has {x.shape[self.dim]} "
                                     f"entries, fewer than the {k} devices")
                for i, c in enumerate(x.chunk(k, self.dim)):
                    per_dev[i].append(c.to(self._devices[i]))
            else:
                for i in range(k):
                    per_dev[i].append(x)
        outs = [rep(*per_dev[i], **kwargs) for i, rep in enumerate(self._replicas)]
        return _gather(outs, self._devices[0], self.dim)

    # ------------------------------------------------------------------ misc
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)

    def parameters(self, recurse=True):
        return self.module.parameters(recurse)

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        return self.module.named_parameters(prefix, recurse, remove_duplicate)

    def bucket_sizes(self):
        """Bytes per bucket, in launch order (diagnostics/tests)."""
        return [b.numel * b.dtype.itemsize for b in self._buckets]


def _gather(outs, dev, dim):
    from ...core.dispatcher import ops
    o0 = outs[0]
    if isinstance(o0, Tensor):
        if o0.ndim == 0:  # per-device scalars (e.g. losses) become a vector, as DataParallel does
            return ops.vt.stack([o.to(dev) for o in outs], 0)
        return ops.vt.cat([o.to(dev) for o in outs], dim)
    if isinstance(o0, (list, tuple)):
        return type(o0)(_gather([o[i] for o in outs], dev, dim) for i in range(len(o0)))
    if isinstance(o0, dict):
        return {k: _gather([o[k] for o in outs], dev, dim) for k in o0}
    return o0


def _reachable_leaves(outputs):
    """ids of leaf tensors the autograd graph of ``outputs`` reaches."""
    from ...core.autograd import AccumulateGrad
    roots = []

    def collect(o):
        if isinstance(o, Tensor):
            if o.grad_fn is not None:
                roots.append(o.grad_fn)
            elif o.requires_grad:
                roots.append(o)
        elif isinstance(o, (list, tuple)):
            for x in o:
                collect(x)
        elif isinstance(o, dict):
            for x in o.values():
                collect(x)
    collect(outputs)
    used, seen, stack = set(), set(), list(roots)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, Tensor):
            used.add(id(n))
            continue
        if isinstance(n, AccumulateGrad):
            v = n.variable()
            if v is not None:
                used.add(id(v))
            continue
        for e in n.next:
            if e is not None:
                stack.append(e[0])
    return used
