"""Multi-tensor AdamW: pointer tables of a parameter group's tensors and one launch per step
(``vibetensor.optim._fused`` drives it)."""
from __future__ import annotations

import numpy as np

from ...core import backend as _be
from . import _mod


class AdamWMulti:
    """Pointer tables for a fixed list of float32 tensors, built once and reused every step."""

    # elements per block: 65536 left a small model's step with one block per tensor and 256 dependent
    # loads per thread (reverse: 0.24 ms of a 1.3 ms graph replay); 4096 gives many short blocks
    CHUNK = 4096

    def __init__(self, params, grads, exp_avgs, exp_avg_sqs):
        cp = _be.cupy_module()
        self.key = tuple(a.data.ptr for a in params + exp_avgs + exp_avg_sqs)
        self.grad_key = tuple(a.data.ptr for a in grads)
        sizes = np.array([p.size for p in params], dtype=np.int64)
        tids, offs = [], []
        for i, n in enumerate(sizes):
            for o in range(0, int(n), self.CHUNK):
                tids.append(i)
                offs.append(o)
        self.nblocks = len(tids)
        tab = lambda arrs: cp.asarray(np.array([a.data.ptr for a in arrs], dtype=np.uint64))  # noqa: E731
        self.P, self.G, self.M, self.V = tab(params), tab(grads), tab(exp_avgs), tab(exp_avg_sqs)
        self.sizes = cp.asarray(sizes)
        self.tids = cp.asarray(np.array(tids, dtype=np.int32))
        self.offs = cp.asarray(np.array(offs, dtype=np.int64))
        self.fn = _mod().get_function("adamw_multi")
        self.inc = _mod().get_function("adamw_step_inc")
        self.step_dev = cp.zeros((1,), dtype=cp.float32)
        self.host_step = None
        self._pinned = None  # rebind_grads' two pinned pointer tables, used in turn
        self._flip = 0

    def rebind_grads(self, grads):
        """New gradient buffers (zero_grad(set_to_none=True) frees them every step): only their pointer
        table is uploaded again, asynchronously from one of two pinned buffers (an upload from pageable
        memory can wait for the device to drain its queue)."""
        import cupyx
        cp = _be.cupy_module()
        self.grad_key = tuple(a.data.ptr for a in grads)
        n = len(self.grad_key)
        if self._pinned is None:
            self._pinned = [cupyx.empty_pinned((n,), dtype=np.uint64) for _ in range(2)]
            self._uploaded = [None, None]
        i = self._flip = 1 - self._flip
        if self._uploaded[i] is not None:
            self._uploaded[i].synchronize()  # that buffer's copy, two uploads ago (long done)
        host = self._pinned[i]
        host[:] = self.grad_key
        G = cp.ndarray((n,), dtype=np.uint64)
        G.set(host, stream=cp.cuda.get_current_stream())
        ev = self._uploaded[i] = cp.cuda.Event(disable_timing=True)
        ev.record()
        self.G = G

    def step(self, lr, beta1, beta2, eps, weight_decay, step):
        """Advance to optimizer step ``step`` (the device counter follows the host's; inside a
        captured graph it advances on every replay, so bias corrections stay right)."""
        cp = _be.cupy_module()
        if self.nblocks == 0:
            return
        if self.host_step is None or self.host_step + 1 != step:
            self.step_dev.fill(step - 1)
        self.inc((1,), (1,), (self.step_dev,))
        self.fn((self.nblocks,), (256,),
                (self.P, self.G, self.M, self.V, self.sizes, self.tids, self.offs, cp.int64(self.CHUNK),
                 cp.float32(lr), cp.float32(beta1), cp.float32(beta2), cp.float32(eps), cp.float32(weight_decay),
                 self.step_dev))
        self.host_step = step
