"""Multi-tensor AdamW on CUDA: one kernel launch per param group and step count
(``vibetensor.cuda.kernels.AdamWMulti``), instead of ~10 dispatched ops per parameter.

Same arithmetic as the per-tensor path (PyTorch's formula) in float32; used for float32 CUDA params
without amsgrad/maximize, with decoupled weight decay (AdamW) or none.
"""
from __future__ import annotations

from ..core import dtype as _dt
from .optimizer import bump_step


def ineligible_reason(group, params, decoupled):
    """None when the fused kernel can take this group, else why not (for fused=True errors)."""
    if group["amsgrad"]:
        return "amsgrad=True"
    if group["maximize"]:
        return "maximize=True"
    if group["weight_decay"] != 0 and not decoupled:
        return "Adam's coupled weight decay (use AdamW, or weight_decay=0)"
    dev = params[0]._device
    f32 = _dt.float32
    for p in params:  # per parameter and step: private fields, no properties
        d = p._device
        if d.type != "cuda":
            return f"a parameter on {d} (the fused kernel is CUDA-only)"
        if d is not dev and d != dev:
            return f"parameters on several devices ({dev}, {d})"
        if p._dtype is not f32 or p.grad._dtype is not f32:
            return f"a {p._dtype.name} parameter or {p.grad._dtype.name} gradient (the fused kernel takes float32)"
        if p._is_sharded or not p._data._c_contiguous:
            return "a sharded or non-contiguous parameter"
    return None


def fused_adamw_step(opt, gi, group, params):
    """Advance each parameter's step counter and update the group by one launch per step count."""
    from ..core import backend as _be
    from ..cuda import kernels
    beta1, beta2 = group["betas"]
    buckets: dict = {}
    f32 = _dt.float32
    init = opt._init_state
    for p in params:
        st = init(p, False)
        step = bump_step(st["step"])
        for k in ("exp_avg", "exp_avg_sq"):  # the kernel indexes flat memory: state must be dense float32
            t = st[k]
            if t._dtype is not f32 or not getattr(t._data, "_c_contiguous", False):
                st[k] = t.to(p.dtype).contiguous().clone()
        b = buckets.get(step)
        if b is None:
            b = buckets[step] = []
        b.append((p, st))
    cache = opt.__dict__.setdefault("_fused_tables", {})
    with _be.device_guard(params[0].device):
        for step, items in buckets.items():
            ps = [p._data for p, _ in items]
            gs = [p.grad._data if p.grad._data._c_contiguous else p.grad._data.copy() for p, _ in items]
            ms = [st["exp_avg"]._data for _, st in items]
            vs = [st["exp_avg_sq"]._data for _, st in items]
            key = tuple(a.data.ptr for a in ps + ms + vs)
            ck = (gi, tuple(id(p) for p, _ in items))
            tab = cache.get(ck)
            if tab is None or tab.key != key:
                tab = kernels.AdamWMulti(ps, gs, ms, vs)
                if len(cache) > 64:
                    cache.clear()
                cache[ck] = tab
            elif any(g.data.ptr != k for g, k in zip(gs, tab.grad_key)):
                tab.rebind_grads(gs)  # new grad buffers (set_to_none): only their pointer table changes
            tab.step(group["lr"], beta1, beta2, group["eps"], group["weight_decay"], step)
            for p, st in items:  # the kernel wrote through the arrays: bump versions as in-place ops do
                p._vc.v += 1
                st["exp_avg"]._vc.v += 1
                st["exp_avg_sq"]._vc.v += 1
