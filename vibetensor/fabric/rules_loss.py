"""Sharding rules for losses split over the batch: each shard sums its part; a mean divides by the
global count (so uneven shards and ignored targets weigh right) and the result is Partial(sum)."""
from __future__ import annotations

import numpy as np

from ..core import backend as _be
from ..core.tensor import Tensor, V
from .handler import Decline, Plan, rule
from .spec import Partial, Replicate, Shard

R = Replicate()
PSUM = Partial("sum")


def _reduction(call):
    if call.arg("size_average") is not None or call.arg("reduce") is not None:
        raise Decline("legacy size_average/reduce arguments")
    red = call.arg("reduction", "mean")
    if red not in ("none", "sum", "mean"):
        raise Decline(f"reduction {red!r}")
    return red


def _batch_axes(call, x, t):
    """Per mesh axis: whether x and t are (or can be made) sharded on dim 0."""
    out = []
    for m in range(call.mesh.ndim):
        px, pt = x._placements[m], t._placements[m]
        out.append((isinstance(px, Shard) and px.dim == 0) or (isinstance(pt, Shard) and pt.dim == 0))
    return out


def _ce_denominator(x, t, weight, ignore_index):
    """What cross_entropy's mean divides by, over the whole batch."""
    if t.dtype.is_floating_point:          # class probabilities
        return x.numel() // x.shape[1]
    tt = _be.to_numpy(t.full_tensor().detach()._data).reshape(-1)
    valid = tt != ignore_index
    if weight is None:
        return int(valid.sum())
    w = _be.to_numpy((weight.full_tensor() if hasattr(weight, "full_tensor") else weight).detach()._data)
    return float(w[tt[valid]].astype(np.float64).sum())


def _loss_rule(call, x, t, weight, red, denom_fn, backward=False, g=None, follow=()):
    if x.ndim < 2 and call.name.startswith("cross_entropy"):
        raise Decline("a single sample")
    if tuple(x.shape[:1]) != tuple(t.shape[:1]):
        raise Decline("input and target batch sizes differ")
    axes = _batch_axes(call, x, t)
    ins = {id(d): [] for d in call.dts}
    outs, gouts = [], []
    for m, on in enumerate(axes):
        ins[id(x)].append(Shard(0) if on else R)
        ins[id(t)].append(Shard(0) if on else R)
        if weight is not None:
            ins[id(weight)].append(R)
        for f in follow:
            if id(f) in ins:
                ins[id(f)].append(Shard(0) if on else R)
        if g is not None:
            ins[id(g)].append(Shard(0) if on and red == "none" else R)
        outs.append((Shard(0) if red == "none" else PSUM) if on else R)
        gouts.append(Shard(0) if on else R)
    for d in call.dts:   # anything else (pos_weight ...) joins replicated
        if len(ins[id(d)]) < call.mesh.ndim:
            ins[id(d)] = [R] * call.mesh.ndim
    plan_in = [ins[id(d)] for d in call.dts]
    if not any(axes) or red != "mean":
        return Plan(plan_in, [tuple(gouts), tuple(gouts)] if backward else tuple(outs))
    denom = denom_fn()

    if backward:
        def local(k, coords, b):
            b.arguments["reduction"] = "sum"
            b.arguments["g"] = V.div(b.arguments["g"], denom)
        return Plan(plan_in, [tuple(gouts), tuple(gouts)], local=local)

    def run(k, coords, b):
        b.arguments["reduction"] = "sum"
        return V.div(call.op(*b.args, **b.kwargs), denom)
    return Plan(plan_in, tuple(outs), run=run)


@rule("cross_entropy")
def cross_entropy(call):
    x, t, w = call.arg("input"), call.arg("target"), call.arg("weight")
    red = _reduction(call)
    if not isinstance(t, Tensor):
        raise Decline("target is not a tensor")
    return _loss_rule(call, x, t, w, red, lambda: _ce_denominator(x, t, w, call.arg("ignore_index")))


@rule("cross_entropy_backward")
def cross_entropy_backward(call):
    g, x, t, w = call.arg("g"), call.arg("x"), call.arg("target"), call.arg("weight")
    red = call.arg("reduction")
    return _loss_rule(call, x, t, w, red, lambda: _ce_denominator(x, t, w, call.arg("ignore_index")),
                      backward=True, g=g)


@rule("mse_loss")
def mse_loss(call):
    x, t = call.arg("input"), call.arg("target")
    if not isinstance(t, Tensor) or tuple(x.shape) != tuple(t.shape):
        raise Decline("broadcast target")
    return _loss_rule(call, x, t, None, _reduction(call), lambda: x.numel())


@rule("mse_loss_backward")
def mse_loss_backward(call):
    g, x, t = call.arg("g"), call.arg("x"), call.arg("t")
    if tuple(x.shape) != tuple(t.shape):
        raise Decline("broadcast target")
    return _loss_rule(call, x, t, None, call.arg("reduction"), lambda: x.numel(), backward=True, g=g)


@rule("nll_loss")
def nll_loss(call):
    x, t, w = call.arg("input"), call.arg("target"), call.arg("weight")
    red = _reduction(call)
    return _loss_rule(call, x, t, w, red, lambda: _ce_denominator(x, t, w, call.arg("ignore_index")))


@rule("nll_loss_backward")
def nll_loss_backward(call):
    g, t, w = call.arg("g"), call.arg("target"), call.arg("weight")
    shape = tuple(call.arg("input_shape"))
    red = call.arg("reduction")
    if len(shape) < 2 or not isinstance(t, Tensor):
        raise Decline("a single sample")
    ins = {id(d): [] for d in call.dts}
    outs, on_any = [], False
    for m in range(call.mesh.ndim):
        pt = t._placements[m]
        on = isinstance(pt, Shard) and pt.dim == 0
        on_any |= on
        ins[id(t)].append(Shard(0) if on else R)
        if w is not None:
            ins[id(w)].append(R)
        if id(g) in ins:
            ins[id(g)].append(Shard(0) if on and red == "none" else R)
        outs.append(Shard(0) if on else R)
    denom = _ce_denominator_from_target(t, w, call.arg("ignore_index")) if on_any and red == "mean" else None

    def local(k, coords, b):
        s = list(shape)
        s[0] = b.arguments["target"].shape[0]
        b.arguments["input_shape"] = tuple(s)
        if denom is not None:
            b.arguments["reduction"] = "sum"
            b.arguments["g"] = V.div(b.arguments["g"], denom)
    return Plan([ins[id(d)] for d in call.dts], tuple(outs), local=local if on_any else None)


def _ce_denominator_from_target(t, w, ignore_index):
    class _X:  # only the index-target path of _ce_denominator is used
        pass
    return _ce_denominator(_X(), t, w, ignore_index)


def _same(a, b):
    return isinstance(a, Tensor) and tuple(a.shape) == tuple(b.shape)


@rule("binary_cross_entropy", "binary_cross_entropy_with_logits")
def bce(call):
    x, t, w = call.arg("input"), call.arg("target"), call.arg("weight")
    if not _same(t, x):
        raise Decline("target shape differs")
    if w is not None and not _same(w, x) and x.ndim < 2:
        raise Decline("broadcast weight on 1-d input")
    follow = (w,) if _same(w, x) else ()
    return _loss_rule(call, x, t, None if follow else w, _reduction(call), lambda: x.numel(), follow=follow)


@rule("binary_cross_entropy_backward", "binary_cross_entropy_with_logits_backward")
def bce_backward(call):
    g, x, t, w = call.arg("g"), call.arg("x"), call.arg("t"), call.arg("weight")
    follow = (w,) if _same(w, x) else ()
    return _loss_rule(call, x, t, None if follow else w, call.arg("reduction"), lambda: x.numel(),
                      backward=True, g=g, follow=follow)
