"""ZeRO-1: optimizer state sharded over the ranks of a group.

    opt = ZeroRedundancyOptimizer(model.parameters(), vt.optim.Adam, lr=1e-3)
    loss.backward(); opt.step()          # without DDP: gradients are averaged here

The parameters are viewed as one flat vector (padded to a multiple of the group size); rank r owns
slice r. ``step()`` reduce-scatters the flat gradient (average; or just slices it when
``reduce_gradients=False`` because DDP already averaged it), runs the wrapped optimizer on its slice
only (so its state -- Adam's moments -- lives on one rank), then all-gathers the updated slices back
into every parameter. Memory for optimizer state drops by the group size; results equal the
unsharded optimizer's.
"""
from __future__ import annotations

from ..core import factories as F
from ..core.grad_mode import no_grad
from .api import _require


class ZeroRedundancyOptimizer:
    def __init__(self, params, optimizer_class, process_group=None, reduce_gradients=True, **defaults):
        params = list(params)
        if not params:
            raise ValueError("ZeroRedundancyOptimizer: empty parameter list")
        if isinstance(params[0], dict):
            raise NotImplementedError("ZeroRedundancyOptimizer: parameter groups (dicts) are not supported; pass "
                                      "a flat list of parameters and the options as keywords")
        self.params = [p for p in params if p.requires_grad]
        dts = {p.dtype.name for p in self.params}
        devs = {str(p.device) for p in self.params}
        if len(dts) != 1 or len(devs) != 1:
            raise NotImplementedError(f"ZeroRedundancyOptimizer: parameters must share one dtype and device, got "
                                      f"dtypes {sorted(dts)} on {sorted(devs)}")
        self.group = _require(process_group)
        if len(self.group.local_ranks) != 1:
            raise NotImplementedError("ZeroRedundancyOptimizer over a group driving several local devices (the "
                                      "local backend): use one process per rank")
        self.reduce_gradients = reduce_gradients
        n, r = self.group.size(), self.group.rank()
        p0 = self.params[0]
        self.numel = sum(p.numel() for p in self.params)
        self.shard = -(-self.numel // n)
        self.padded = self.shard * n
        self.dtype, self.device = p0.dtype, p0.device
        self._rank = r
        flat = self._flat([p.detach() for p in self.params])
        from ..nn.parameter import Parameter
        self.local = Parameter(flat[r * self.shard:(r + 1) * self.shard].clone())
        self.optim = optimizer_class([self.local], **defaults)

    @property
    def param_groups(self):
        return self.optim.param_groups

    @property
    def state(self):
        return self.optim.state

    def _flat(self, tensors):
        from ..core.dispatcher import ops
        parts = [t.reshape(-1) for t in tensors]
        pad = self.padded - self.numel
        if pad:
            parts.append(F.zeros((pad,), dtype=self.dtype, device=self.device))
        return ops.vt.cat(parts, 0)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..core.grad_mode import enable_grad
            with enable_grad():
                loss = closure()
        with no_grad():
            grads = [p.grad if p.grad is not None else F.zeros_like(p) for p in self.params]
            flat_g = self._flat(grads)
            g_local = F.zeros((self.shard,), dtype=self.dtype, device=self.device)
            if self.reduce_gradients:
                from .types import ReduceOp
                op = ReduceOp.AVG if self.dtype.is_floating_point else ReduceOp.SUM
                self.group.reduce_scatter_tensor(g_local, flat_g, op=op)
            else:
                g_local = flat_g[self._rank * self.shard:(self._rank + 1) * self.shard].clone()
            self.local.grad = g_local
            self.optim.step()
            full = F.zeros((self.padded,), dtype=self.dtype, device=self.device)
            self.group.all_gather_into_tensor(full, self.local.detach())
            off = 0
            for p in self.params:
                k = p.numel()
                p._data[...] = full._data[off:off + k].reshape(p._data.shape)
                p._vc.v += 1
                off += k
        return loss

    def state_dict(self):
        """This rank's shard of the optimizer state (consolidation is not implemented)."""
        return self.optim.state_dict()

    def load_state_dict(self, sd):
        self.optim.load_state_dict(sd)
