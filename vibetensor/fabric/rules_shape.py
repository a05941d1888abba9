"""Sharding rules for view/shape ops that keep a sharded dim intact (or merge/split it evenly)."""
from __future__ import annotations

import math

from .handler import Decline, Plan, rule
from .spec import Replicate, Shard


def _infer(shape, numel):
    shape = list(shape)
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = numel // known if known else 0
    return tuple(shape)


def _prefix(shape, i):
    return math.prod(shape[:i])


def _map_dim(ins, outs, d, k, others):
    """Output dim holding input dim ``d``'s shards, or None. Intact dims always map; a merged or split
    dim maps when its sharded leading factor splits evenly over ``k`` devices."""
    pre = _prefix(ins, d)
    for j in range(len(outs) + 1):
        if _prefix(outs, j) == pre and j < len(outs):
            if outs[j] == ins[d]:
                return j
            if others:
                return None
            if outs[j] > ins[d] and outs[j] % ins[d] == 0 and ins[d] % k == 0:
                return j   # merged: d leads the merged output dim
            if ins[d] > outs[j] and ins[d] % outs[j] == 0 and outs[j] % k == 0:
                return j   # split: the output dim leads the split input dim
            return None
        if _prefix(outs, j) > pre:
            return None
    return None


@rule("view")
def view(call):
    a = call.dts[0]
    ins_shape = tuple(a.shape)
    out_shape = _infer(tuple(call.arg("shape")), a.numel())
    ins, outs, shard_map = [], [], []
    for m, p in enumerate(a._placements):
        if isinstance(p, Shard):
            others = any(isinstance(q, Shard) and q.dim == p.dim for i, q in enumerate(a._placements) if i != m)
            j = _map_dim(ins_shape, out_shape, p.dim, call.mesh.shape[m], others)
            if j is not None:
                ins.append(p)
                outs.append(Shard(j))
                shard_map.append((p.dim, j))
                continue
            ins.append(Replicate())
            outs.append(Replicate())
        else:
            ins.append(p)
            outs.append(p)

    def local(k, coords, b):
        x = b.arguments["a"]
        shp = list(out_shape)
        for d, j in shard_map:
            shp[j] = out_shape[j] * x.shape[d] // ins_shape[d] if ins_shape[d] else 0
        b.arguments["shape"] = tuple(shp)
    return Plan([ins], tuple(outs), local=local if shard_map else None)


@rule("expand")
def expand(call):
    a = call.dts[0]
    shape = list(call.arg("shape"))
    lead = len(shape) - a.ndim
    shape = [a.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape)]
    ins, outs, sh = [], [], []
    for p in a._placements:
        if isinstance(p, Shard) and a.shape[p.dim] == shape[p.dim + lead]:
            ins.append(p)
            outs.append(Shard(p.dim + lead))
            sh.append(p.dim)
        elif isinstance(p, Shard):
            ins.append(Replicate())
            outs.append(Replicate())
        else:
            ins.append(p)
            outs.append(p)

    def local(k, coords, b):
        x = b.arguments["a"]
        s = list(shape)
        for d in sh:
            s[d + lead] = x.shape[d]
        b.arguments["shape"] = tuple(s)
    return Plan([ins], tuple(outs), local=local if sh else None)


def _permuted(call, perm):
    """perm[j] = input dim at output position j."""
    a = call.dts[0]
    inv = {d: j for j, d in enumerate(perm)}
    outs = [Shard(inv[p.dim]) if isinstance(p, Shard) else p for p in a._placements]
    return Plan([a._placements], tuple(outs))


@rule("permute")
def permute(call):
    n = call.dts[0].ndim
    return _permuted(call, [d % max(n, 1) for d in call.arg("dims")])


@rule("transpose")
def transpose(call):
    n = call.dts[0].ndim
    d0, d1 = call.arg("dim0") % max(n, 1), call.arg("dim1") % max(n, 1)
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return _permuted(call, perm)


@rule("movedim")
def movedim(call):
    n = call.dts[0].ndim
    src, dst = call.arg("source"), call.arg("destination")
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    src = [s % n for s in src]
    dst = [d % n for d in dst]
    perm = [-1] * n
    for s, d in zip(src, dst):
        perm[d] = s
    rest = iter([i for i in range(n) if i not in src])
    perm = [p if p >= 0 else next(rest) for p in perm]
    return _permuted(call, perm)


@rule("unsqueeze")
def unsqueeze(call):
    a = call.dts[0]
    d = call.arg("dim") % (a.ndim + 1)
    outs = [Shard(p.dim + (p.dim >= d)) if isinstance(p, Shard) else p for p in a._placements]
    return Plan([a._placements], tuple(outs))


@rule("squeeze")
def squeeze(call):
    a = call.dts[0]
    n = a.ndim
    dim = call.arg("dim")
    cand = range(n) if dim is None else ([dim] if isinstance(dim, int) else list(dim))
    gone = sorted({d % max(n, 1) for d in cand if n and a.shape[d % n] == 1})
    ins, outs = [], []
    for p in a._placements:
        if isinstance(p, Shard) and p.dim in gone:
            ins.append(Replicate())
            outs.append(Replicate())
        elif isinstance(p, Shard):
            ins.append(p)
            outs.append(Shard(p.dim - sum(1 for g in gone if g < p.dim)))
        else:
            ins.append(p)
            outs.append(p)

    def local(k, coords, b):  # name the global size-1 dims: a shard may be size 1 where the tensor is not
        b.arguments["dim"] = tuple(gone)
    return Plan([ins], tuple(outs), local=local if n else None)


def _keep_unless(call, dims):
    """Shards stay unless on one of ``dims`` (then Replicate); other tensors Replicate."""
    a = call.dts[0]
    ins0 = [p if not (isinstance(p, Shard) and p.dim in dims) and not p.is_partial() else Replicate()
            for p in a._placements]
    rest = [tuple(Replicate() for _ in a._placements) for _ in call.dts[1:]]
    return ins0, rest


@rule("narrow", "index_select", "tril", "triu", "diagonal")
def keep_other_dims(call):
    a = call.dts[0]
    if call.args[0] is not a:
        raise Decline("first argument is not the sharded tensor")
    n = a.ndim
    if call.name in ("tril", "triu"):
        dims = {n - 2, n - 1}
    elif call.name == "diagonal":
        d1, d2 = call.arg("dim1") % n, call.arg("dim2") % n
        dims = {d1, d2}
        ins0, rest = _keep_unless(call, dims)
        outs = [Shard(p.dim - sum(1 for d in dims if d < p.dim)) if isinstance(p, Shard) else p for p in ins0]
        return Plan([ins0] + rest, tuple(outs))
    else:
        dims = {call.arg("dim") % max(n, 1)}
    ins0, rest = _keep_unless(call, dims)
    return Plan([ins0] + rest, tuple(ins0))


@rule("split", "unbind")
def split(call):
    a = call.dts[0]
    n = a.ndim
    d = call.arg("dim") % max(n, 1)
    ins0, _ = _keep_unless(call, {d})
    outs = tuple(ins0) if call.name == "split" else tuple(
        Shard(p.dim - (p.dim > d)) if isinstance(p, Shard) else p for p in ins0)
    return Plan([ins0], outs)


@rule("cat", "stack")
def cat(call):
    ts = call.dts
    if len(ts) != len(call.arg("tensors")):
        raise Decline("mixed tensor list")
    n = ts[0].ndim
    d = call.arg("dim")
    ins = [[] for _ in ts]
    outs = []
    nd = n + (call.name == "stack")
    d = d % max(nd, 1)
    for m in range(call.mesh.ndim):
        ps = call.placements(m)
        target = None
        for t, p in zip(ts, ps):
            if isinstance(p, Shard) and (call.name == "stack" or p.dim != d) and t.ndim == n:
                target = p.dim
                break
        ok = target is not None and all(t.ndim == n and t.shape[target] == ts[0].shape[target] for t in ts)
        for i in range(len(ts)):
            ins[i].append(Shard(target) if ok else Replicate())
        if ok and call.name == "stack":
            outs.append(Shard(target + (target >= d)))
        else:
            outs.append(Shard(target) if ok else Replicate())
    return Plan(ins, tuple(outs))


def basic_index_map(idx, n):
    """For basic indexing (ints, slices, None, ...): (input dims indexed non-trivially, {input dim: output
    dim}); None for advanced indexing."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(not (isinstance(i, (int, slice)) or i is None or i is Ellipsis) or isinstance(i, bool) for i in idx):
        return None
    consumed = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if consumed > n or sum(1 for i in idx if i is Ellipsis) > 1:
        return None
    full = []
    for i in idx:
        if i is Ellipsis:
            full.extend([slice(None)] * (n - consumed))
        else:
            full.append(i)
    if Ellipsis not in idx:
        full.extend([slice(None)] * (n - consumed))
    out_of, touched = {}, set()
    d = j = 0
    for i in full:
        if i is None:
            j += 1
            continue
        if isinstance(i, int):
            touched.add(d)
        else:
            if i != slice(None):
                touched.add(d)
            out_of[d] = j
            j += 1
        d += 1
    return touched, out_of


@rule("getitem")
def getitem(call):
    """Basic indexing (ints, slices, None, ...) on unsharded dims keeps the shards."""
    a = call.dts[0]
    if len(call.dts) != 1 or call.args[0] is not a:
        raise Decline("tensor indices")
    mp = basic_index_map(call.args[1], a.ndim)
    if mp is None:
        raise Decline("advanced (tensor/list/bool) indexing")
    touched, out_of = mp
    ins, outs = [], []
    for p in a._placements:
        if isinstance(p, Shard) and p.dim not in touched:
            ins.append(p)
            outs.append(Shard(out_of[p.dim]))
        elif isinstance(p, Shard):
            ins.append(Replicate())
            outs.append(Replicate())
        else:
            ins.append(p)
            outs.append(p)
    return Plan([ins], tuple(outs))


@rule("index_grad")
def index_grad(call):
    """getitem's backward (zeros with ``g`` written at a basic index): shards of untouched dims stay."""
    g = call.dts[0]
    if len(call.dts) != 1 or call.args[0] is not g:
        raise Decline("tensor indices")
    shape = tuple(call.arg("shape"))
    mp = basic_index_map(call.arg("idx"), len(shape))
    if mp is None:
        raise Decline("advanced indexing")
    touched, out_of = mp
    in_of = {j: d for d, j in out_of.items()}
    ins, outs, sh = [], [], []
    for p in g._placements:
        d = in_of.get(p.dim) if isinstance(p, Shard) else None
        if d is not None and d not in touched:
            ins.append(p)
            outs.append(Shard(d))
            sh.append((p.dim, d))
        else:
            ins.append(Replicate() if isinstance(p, Shard) else p)
            outs.append(Replicate() if isinstance(p, Shard) else p)

    def local(k, coords, b):
        s = list(shape)
        for j, d in sh:
            s[d] = b.arguments["g"].shape[j]
        b.arguments["shape"] = tuple(s)
    return Plan([ins], tuple(outs), local=local if sh else None)


@rule("slice_backward")
def slice_backward(call):
    g = call.dts[0]
    dim = call.arg("dim")
    shape = tuple(call.arg("input_shape"))
    ins, outs, sh = [], [], []
    for p in g._placements:
        if isinstance(p, Shard) and p.dim != dim % len(shape):
            ins.append(p)
            outs.append(p)
            sh.append(p.dim)
        else:
            ins.append(Replicate() if isinstance(p, Shard) else p)
            outs.append(Replicate() if isinstance(p, Shard) else p)

    def local(k, coords, b):
        s = list(shape)
        for d in sh:
            s[d] = b.arguments["g"].shape[d]
        b.arguments["input_shape"] = tuple(s)
    return Plan([ins], tuple(outs), local=local if sh else None)


@rule("_index_grad")
def minmax_grad(call):
    """max/min(dim) backward: zeros with ``g`` at the arg-extreme; shards of other dims stay."""
    a, g = call.args[0], call.args[1]
    n = a.ndim
    dim, keep = call.arg("dim") % max(n, 1), call.arg("keepdim")
    ia, ig, outs = [], [], []
    for pa, pg in zip(a._placements, g._placements):
        sd = pa.dim if isinstance(pa, Shard) else None
        if sd is None and isinstance(pg, Shard):
            sd = pg.dim + (1 if not keep and pg.dim >= dim else 0)
        if sd is not None and sd != dim:
            ia.append(Shard(sd))
            ig.append(Shard(sd - (1 if not keep and sd > dim else 0)))
            outs.append(Shard(sd))
        else:
            ia.append(Replicate())
            ig.append(Replicate())
            outs.append(Replicate())
    return Plan([ia, ig] if call.dts[0] is a else [ig, ia], tuple(outs))


@rule("diagonal_backward")
def diagonal_backward(call):
    """Zeros with ``g`` on a diagonal: ``g``'s leading dims are the input dims other than dim1/dim2."""
    g = call.dts[0]
    shape = tuple(call.arg("input_shape"))
    n = len(shape)
    d1, d2 = call.arg("dim1") % n, call.arg("dim2") % n
    rest = [d for d in range(n) if d not in (d1, d2)]
    ins, outs, sh = [], [], []
    for p in g._placements:
        if isinstance(p, Shard) and p.dim < len(rest):
            ins.append(p)
            outs.append(Shard(rest[p.dim]))
            sh.append((p.dim, rest[p.dim]))
        else:
            ins.append(Replicate() if isinstance(p, Shard) else p)
            outs.append(Replicate() if isinstance(p, Shard) else p)

    def local(k, coords, b):
        s = list(shape)
        for j, d in sh:
            s[d] = b.arguments["g"].shape[j]
        b.arguments["input_shape"] = tuple(s)
    return Plan([ins], tuple(outs), local=local if sh else None)


@rule("index_add")
def index_add(call):
    """index_add along ``dim`` (index_select's backward): shards of other dims stay."""
    x = call.arg("input") if call.arg("input") is not None else call.arg("a")   # vt:: / vt_impl:: forms
    idx, src = call.arg("index"), call.arg("source")
    n = x.ndim
    dim = call.arg("dim") % max(n, 1)
    ins = {id(t): [] for t in call.dts}
    outs = []
    for m in range(call.mesh.ndim):
        target = None
        for t in (x, src):
            p = t._placements[m] if hasattr(t, "_placements") else Replicate()
            if isinstance(p, Shard) and p.dim != dim and src.ndim == n and src.shape[p.dim] == x.shape[p.dim]:
                target = p.dim
                break
        for t in (x, src):
            if id(t) in ins:
                ins[id(t)].append(Shard(target) if target is not None else Replicate())
        if id(idx) in ins:
            ins[id(idx)].append(Replicate())
        outs.append(Shard(target) if target is not None else Replicate())
    return Plan([ins[id(t)] for t in call.dts], tuple(outs))


@rule("_prod_others")
def prod_others(call):
    a = call.dts[0]
    ax = call.arg("ax")
    n = a.ndim
    dims = set(range(n)) if ax is None else {d % max(n, 1) for d in ((ax,) if isinstance(ax, int) else ax)}
    ins = [p if isinstance(p, Shard) and p.dim not in dims else Replicate() for p in a._placements]
    return Plan([ins], tuple(ins))
