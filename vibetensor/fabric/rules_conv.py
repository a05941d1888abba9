"""Sharding rules for conv2d and 2-d pooling split over the batch (pools also over channels)."""
from __future__ import annotations

from .handler import Decline, Plan, rule
from .spec import Partial, Replicate, Shard

R = Replicate()


def _dims_ok(x, allowed):
    if x.ndim != 4:
        raise Decline("unbatched (3-d) input")
    return allowed


def _simple(call, x, allowed, follow=(), outs_n=1, partial_out=()):
    """x keeps a Shard on an allowed dim; tensors in ``follow`` shard the same dim; the rest Replicate."""
    ins = {id(t): [] for t in call.dts}
    outs = [[] for _ in range(outs_n)]
    for m in range(call.mesh.ndim):
        p = x._placements[m]
        d = p.dim if isinstance(p, Shard) and p.dim in allowed else None
        for t in call.dts:
            sharded = d is not None and (t is x or any(t is f for f in follow))
            ins[id(t)].append(Shard(d) if sharded else R)
        for i in range(outs_n):
            outs[i].append(R if d is None else (Partial("sum") if i in partial_out else Shard(d)))
    pl = [ins[id(t)] for t in call.dts]
    return pl, [tuple(o) for o in outs]


@rule("conv2d")
def conv2d(call):
    x = call.arg("input")
    pl, outs = _simple(call, x, _dims_ok(x, {0}))
    return Plan(pl, outs[0])


@rule("max_pool2d", "avg_pool2d")
def pool2d(call):
    x = call.arg("input")
    multi = bool(call.arg("return_indices", False))
    pl, outs = _simple(call, x, _dims_ok(x, {0, 1}), outs_n=2 if multi else 1)
    return Plan(pl, outs if multi else outs[0])


@rule("max_pool2d_backward")
def max_pool2d_backward(call):
    x = call.arg("input")
    pl, outs = _simple(call, x, _dims_ok(x, {0, 1}), follow=(call.arg("g"),))
    return Plan(pl, outs[0])


def _shape_rewrite(call, g, key, allowed):
    shape = tuple(call.arg(key))
    if len(shape) != 4:
        raise Decline("unbatched input")
    ins, outs, sh = [], [], []
    for p in g._placements:
        if isinstance(p, Shard) and p.dim in allowed:
            ins.append(p)
            outs.append(p)
            sh.append(p.dim)
        else:
            ins.append(R)
            outs.append(R)

    def local(k, coords, b):
        s = list(shape)
        for d in sh:
            s[d] = b.arguments["g"].shape[d]
        b.arguments[key] = tuple(s)
    rest = [[R] * call.mesh.ndim for t in call.dts[1:]]
    return Plan([ins] + rest, tuple(outs), local=local if sh else None)


@rule("avg_pool2d_backward")
def avg_pool2d_backward(call):
    if call.dts[0] is not call.arg("g"):
        raise Decline("unexpected arguments")
    return _shape_rewrite(call, call.arg("g"), "input_shape", {0, 1})


@rule("conv2d_backward_input")
def conv2d_backward_input(call):
    if call.dts[0] is not call.arg("g"):
        raise Decline("unexpected arguments")
    return _shape_rewrite(call, call.arg("g"), "input_shape", {0})


@rule("conv2d_backward_weight")
def conv2d_backward_weight(call):
    g, x = call.arg("g"), call.arg("input")
    if x.ndim != 4:
        raise Decline("unbatched input")
    ins = {id(t): [] for t in call.dts}
    outs = []
    for m in range(call.mesh.ndim):
        on = any(isinstance(t._placements[m], Shard) and t._placements[m].dim == 0 for t in (g, x))
        ins[id(g)].append(Shard(0) if on else R)
        ins[id(x)].append(Shard(0) if on else R)
        outs.append(Partial("sum") if on else R)
    return Plan([ins[id(t)] for t in call.dts], tuple(outs))
