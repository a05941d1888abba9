"""Sharding rules for reductions (a sharded reduced dim becomes Partial where the reduction allows)
and for ops that work along one dim (softmax, scans): shards along other dims stay put."""
from __future__ import annotations

from ..core.tensor import V
from .handler import Decline, Plan, rule
from .spec import Partial, ReduceOp, Replicate, Shard, chunk_sizes

_PARTIAL_OF = {"sum": ReduceOp.SUM, "count_nonzero": ReduceOp.SUM, "mean": ReduceOp.SUM,
               "amax": ReduceOp.MAX, "amin": ReduceOp.MIN}
_LINEAR = {"sum", "mean"}


def reduced_dims(call, ndim):
    dim = call.arg("dim")
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    n = max(ndim, 1)
    return tuple(sorted({d % n for d in dim}))


@rule("sum", "mean", "amax", "amin", "prod", "var", "std", "logsumexp", "norm", "all", "any", "count_nonzero",
      "argmax", "argmin", "_max_dim", "_min_dim")
def reduction(call):
    a = call.dts[0]
    if call.args[0] is not a or len(call.dts) != 1:
        raise Decline("reduction over a non-tensor or several tensors")
    if call.name in ("argmax", "argmin") and call.arg("dim") is None:
        dims = tuple(range(a.ndim))
        keep = False
    else:
        dims = reduced_dims(call, a.ndim)
        keep = bool(call.arg("keepdim", False))
    ins, outs, partial_axes = [], [], []
    for m, p in enumerate(a._placements):
        if isinstance(p, Shard):
            if p.dim in dims:
                rop = _PARTIAL_OF.get(call.name)
                if rop is not None and (rop is ReduceOp.SUM or 0 not in chunk_sizes(a.shape[p.dim], call.mesh.shape[m])):
                    ins.append(p)
                    outs.append(Partial(rop))
                    partial_axes.append(m)
                else:
                    ins.append(Replicate())
                    outs.append(Replicate())
            else:
                ins.append(p)
                outs.append(Shard(p.dim - (0 if keep else sum(1 for d in dims if d < p.dim))))
        elif isinstance(p, Partial) and ((call.name in _LINEAR and p.reduce_op in (ReduceOp.SUM, ReduceOp.AVG))
                                         or _PARTIAL_OF.get(call.name) is p.reduce_op and call.name in ("amax", "amin")):
            ins.append(p)
            outs.append(p)
        else:
            ins.append(Replicate())
            outs.append(Replicate())
    run = None
    if call.name == "mean" and partial_axes:
        total = 1
        for d in dims:
            total *= a.shape[d]
        run = _mean_as_sum(dims, keep, total)
    multi = call.name in ("_max_dim", "_min_dim")
    return Plan([ins], [tuple(outs), tuple(outs)] if multi else tuple(outs), run=run)


def _mean_as_sum(dims, keep, total):
    """mean over a sharded dim: each shard sums its part and divides by the global count (Partial sum);
    empty shards then give 0, not nan."""
    def run(k, coords, b):
        x = b.arguments["a"]
        return V.div(V.sum(x, dims, keep, dtype=b.arguments.get("dtype")), total)
    return run


# ------------------------------------------------------------------ along one dim
def _rowwise(call, dim):
    ref = call.dts[0]
    nd = ref.ndim
    d = dim % max(nd, 1) if dim is not None else None
    ins = [[] for _ in call.dts]
    outs = []
    for m in range(call.mesh.ndim):
        target = None
        for t, p in zip(call.dts, call.placements(m)):
            if isinstance(p, Shard) and t.ndim == nd and p.dim != d:
                target = p.dim
                break
        for i, t in enumerate(call.dts):
            ins[i].append(Shard(target) if target is not None and t.ndim == nd and
                          t.shape[target] == ref.shape[target] else Replicate())
        outs.append(Shard(target) if target is not None else Replicate())
    return ins, tuple(outs)


@rule("softmax", "log_softmax", "softmax_backward", "log_softmax_backward", "cumsum", "cumprod", "_rev_cumsum",
      "_cumprod_grad", "flip", "roll")
def along_dim(call):
    if call.name in ("flip", "roll"):
        dims = call.arg("dims")
        if dims is None:
            raise Decline("flip/roll over all dims")
        dims = ((dims,) if isinstance(dims, int) else tuple(dims)) + tuple(call.arg("more") or ())
        nd = call.dts[0].ndim
        ds = {x % nd for x in dims}
        ins, outs = [], []
        for p in call.dts[0]._placements:
            ok = isinstance(p, Shard) and p.dim not in ds
            ins.append(p if ok else Replicate())
            outs.append(p if ok else Replicate())
        return Plan([ins], tuple(outs))
    dim = call.arg("dim")
    if dim is None:
        dim = call.arg("d")
    if dim is None:
        raise Decline("no dim given (legacy implicit softmax dim)")
    ins, outs = _rowwise(call, dim)
    return Plan(ins, outs)


def _norm_rule(call, nshape, grads):
    x = call.arg("input") if call.arg("input") is not None else call.arg("x")
    k = 1 if isinstance(nshape, int) else len(nshape)
    lead = x.ndim - k
    ins = [[] for _ in call.dts]
    outs = [[] for _ in range(grads)] if grads else []
    xi = [i for i, t in enumerate(call.dts) if t is x or (t.ndim == x.ndim and tuple(t.shape) == tuple(x.shape))]
    for m in range(call.mesh.ndim):
        target = None
        for i in xi:
            p = call.dts[i]._placements[m]
            if isinstance(p, Shard) and p.dim < lead:
                target = p.dim
                break
        for i, t in enumerate(call.dts):
            ins[i].append(Shard(target) if target is not None and i in xi else Replicate())
        if grads:
            outs[0].append(Shard(target) if target is not None else Replicate())
            for j in range(1, grads):
                outs[j].append(Partial("sum") if target is not None else Replicate())
        else:
            outs.append(Shard(target) if target is not None else Replicate())
    return Plan(ins, [tuple(o) for o in outs] if grads else tuple(outs))


@rule("layer_norm", "rms_norm")
def norm_forward(call):
    return _norm_rule(call, call.arg("normalized_shape"), 0)


@rule("layer_norm_backward")
def layer_norm_bw(call):
    return _norm_rule(call, call.arg("normalized_shape"), 3)


@rule("rms_norm_backward")
def rms_norm_bw(call):
    return _norm_rule(call, call.arg("normalized_shape"), 2)
