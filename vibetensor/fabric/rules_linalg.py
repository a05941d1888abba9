"""Sharding rules for matmul/linear (data-, column- and row-parallel) and embedding."""
from __future__ import annotations

from ..core.tensor import Tensor, V
from .handler import Decline, Plan, rule
from .spec import Partial, ReduceOp, Replicate, Shard

R = Replicate()
PSUM = Partial("sum")


def _pos(call, t):
    for i, d in enumerate(call.dts):
        if d is t:
            return i
    raise Decline("argument is not a DTensor")


def _linear_partial(p):
    return isinstance(p, Partial) and p.reduce_op in (ReduceOp.SUM, ReduceOp.AVG)


def _drop_bias_off_root(partial_sum_axes, name="bias"):
    """With a Partial(sum) output the bias must be added once: only on coordinate 0 of those axes."""
    def local(k, coords, b):
        if any(coords[m] != 0 for m in partial_sum_axes):
            b.arguments[name] = None
    return local


@rule("linear")
def linear(call):
    x, w = call.arg("input"), call.arg("weight")
    bias = call.arg("bias")
    if w.ndim != 2 or x.ndim < 1:
        raise Decline("1-d weight")
    has_b = bias is not None
    xi, wi = _pos(call, x), _pos(call, w)
    ins = [[] for _ in call.dts]
    outs, psum_axes = [], []
    on = x.ndim  # output ndim
    for m in range(call.mesh.ndim):
        px, pw = x._placements[m], w._placements[m]
        if isinstance(pw, Shard) and pw.dim == 0:                         # column-parallel
            sel = (R, Shard(0), Shard(0), Shard(on - 1))
        elif (isinstance(pw, Shard) and pw.dim == 1) or (isinstance(px, Shard) and px.dim == x.ndim - 1):
            sel = (Shard(x.ndim - 1), Shard(1), R, PSUM)                   # row-parallel
            psum_axes.append(m)
        elif isinstance(px, Shard):                                        # data-parallel
            sel = (px, R, R, Shard(px.dim))
        elif _linear_partial(px) and not isinstance(pw, Partial):
            sel = (px, R, R, px)
            if px.reduce_op is ReduceOp.SUM:
                psum_axes.append(m)
        else:
            sel = (R, R, R, R)
        ins[xi].append(sel[0])
        ins[wi].append(sel[1])
        if has_b:
            ins[_pos(call, bias)].append(sel[2])
        outs.append(sel[3])
    return Plan(ins, tuple(outs), local=_drop_bias_off_root(psum_axes) if has_b and psum_axes else None,
                run=_empty_safe(call.op, _linear_empty))


def _empty_safe(op, alt):
    """Run ``op`` on a shard, or ``alt`` when an uneven layout left the shard an empty dim (the dense
    kernels flatten with -1, which numpy cannot do for size-0 arrays)."""
    def run(k, coords, b):
        if any(isinstance(v, Tensor) and 0 in tuple(v.shape) for v in b.arguments.values()):
            return alt(b.arguments)
        return op(*b.args, **b.kwargs)
    return run


def _lead(t):
    n = 1
    for s in tuple(t.shape)[:-1]:
        n *= s
    return n


def _linear_empty(a):
    x, w, bias = a["input"], a["weight"], a["bias"]
    y = V.matmul(V.reshape(x, (_lead(x), x.shape[-1])), V.transpose(w, 0, 1))
    y = V.reshape(y, tuple(x.shape[:-1]) + (w.shape[0],))
    return y if bias is None else y + bias


def _linear_backward_empty(a):
    g, x, w = a["g"], a["x"], a["w"]
    g2 = V.reshape(g, (_lead(g), g.shape[-1]))
    x2 = V.reshape(x, (_lead(x), x.shape[-1]))
    gx = V.reshape(V.matmul(g2, w), tuple(x.shape)) if a["need_x"] else None
    gw = V.matmul(V.transpose(g2, 0, 1), x2) if a["need_w"] else None
    gb = V.sum(g2, 0) if a["need_b"] and a["bias_shape"] is not None else None
    return gx, gw, gb


@rule("linear_backward")
def linear_backward(call):
    g, x, w = call.arg("g"), call.arg("x"), call.arg("w")
    if w.ndim != 2:
        raise Decline("1-d weight")
    gi, xi, wi = _pos(call, g), _pos(call, x), _pos(call, w)
    ins = [[] for _ in call.dts]
    ogx, ogw, ogb = [], [], []
    for m in range(call.mesh.ndim):
        pg, px, pw = g._placements[m], x._placements[m], w._placements[m]
        if isinstance(pw, Shard) and pw.dim == 0:
            sel = (Shard(g.ndim - 1), R, Shard(0), PSUM, Shard(0), Shard(0))
        elif isinstance(pw, Shard) and pw.dim == 1:
            sel = (R, Shard(x.ndim - 1), Shard(1), Shard(x.ndim - 1), Shard(1), R)
        else:
            bd = next((p.dim for p in (px, pg) if isinstance(p, Shard) and p.dim < x.ndim - 1), None)
            if bd is not None:
                sel = (Shard(bd), Shard(bd), R, Shard(bd), PSUM, PSUM)
            elif isinstance(pg, Partial) and pg.reduce_op is ReduceOp.SUM:
                sel = (pg, R, R, PSUM, PSUM, PSUM)
            else:
                sel = (R, R, R, R, R, R)
        ins[gi].append(sel[0])
        ins[xi].append(sel[1])
        ins[wi].append(sel[2])
        ogx.append(sel[3])
        ogw.append(sel[4])
        ogb.append(sel[5])
    bs = call.arg("bias_shape")
    if bs is not None and len(tuple(bs)) != 1:
        raise Decline("bias of more than one dim")

    def local(k, coords, b):  # the bias gradient has this shard's out features
        if b.arguments["bias_shape"] is not None:
            b.arguments["bias_shape"] = (b.arguments["g"].shape[-1],)
    return Plan(ins, [tuple(ogx), tuple(ogw), tuple(ogb)], local=local,
                run=_empty_safe(call.op, _linear_backward_empty))


def _mm_dims(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise Decline("1-d matmul operands")
    return max(a.ndim, b.ndim)


@rule("matmul", "mm", "bmm")
def matmul(call):
    a, b = call.args[0], call.args[1]
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        raise Decline("non-tensor operand")
    on = _mm_dims(a, b)
    ins_a, ins_b, outs = [], [], []
    for m in range(call.mesh.ndim):
        pa, pb = a._placements[m], b._placements[m]
        sel = None
        for t, p, other in ((a, pa, b), (b, pb, a)):
            if isinstance(p, Shard) and p.dim < t.ndim - 2:
                od = p.dim + on - t.ndim
                if od - (on - other.ndim) >= 0 and other.shape[od - (on - other.ndim)] == t.shape[p.dim]:
                    oth = Shard(od - (on - other.ndim))
                elif od - (on - other.ndim) < 0 or other.shape[od - (on - other.ndim)] == 1:
                    oth = R
                else:
                    continue
                sel = (p, oth, Shard(od)) if t is a else (oth, p, Shard(od))
                break
        if sel is None:
            if isinstance(pa, Shard) and pa.dim == a.ndim - 2:
                sel = (pa, R, Shard(on - 2))
            elif isinstance(pb, Shard) and pb.dim == b.ndim - 1:
                sel = (R, pb, Shard(on - 1))
            elif (isinstance(pa, Shard) and pa.dim == a.ndim - 1) or (isinstance(pb, Shard) and pb.dim == b.ndim - 2):
                sel = (Shard(a.ndim - 1), Shard(b.ndim - 2), PSUM)
            elif _linear_partial(pa) and not isinstance(pb, Partial):
                sel = (pa, R, pa)
            elif _linear_partial(pb) and not isinstance(pa, Partial):
                sel = (R, pb, pb)
            else:
                sel = (R, R, R)
        ins_a.append(sel[0])
        ins_b.append(sel[1])
        outs.append(sel[2])
    ins = [ins_a, ins_b] if call.dts[0] is a else [ins_b, ins_a]   # (a @ a: one layout per operand)
    return Plan(ins, tuple(outs))


def _vector_backward(call, g, a, b):
    """matmul_backward for dot (1-d x 1-d) and mv (2-d x 1-d)."""
    ig, ia, ib, oa, ob = [], [], [], [], []
    for m in range(call.mesh.ndim):
        pa, pb = a._placements[m], b._placements[m]
        if a.ndim == 1:      # dot: g is a scalar
            sel = (R, Shard(0), Shard(0), Shard(0), Shard(0)) if isinstance(pa, Shard) or isinstance(pb, Shard) \
                else (R, R, R, R, R)
        elif isinstance(pa, Shard) and pa.dim == 0:
            sel = (Shard(0), pa, R, pa, PSUM)
        elif (isinstance(pa, Shard) and pa.dim == 1) or isinstance(pb, Shard):
            sel = (R, Shard(1), Shard(0), Shard(1), Shard(0))
        else:
            sel = (R, R, R, R, R)
        for lst, v in zip((ig, ia, ib, oa, ob), sel):
            lst.append(v)
    by = {"g": ig, "a": ia, "b": ib}
    return Plan([by[r] for r in call.roles()], [tuple(oa), tuple(ob)])


@rule("matmul_backward")
def matmul_backward(call):
    g, a, b = call.args[0], call.args[1], call.args[2]
    if b.ndim == 1 and a.ndim in (1, 2):
        return _vector_backward(call, g, a, b)
    on = _mm_dims(a, b)
    if g.ndim != on or a is b:
        raise Decline("unexpected shapes")
    ig, ia, ib, oa, ob = [], [], [], [], []
    for m in range(call.mesh.ndim):
        pa, pb = a._placements[m], b._placements[m]
        bd = next((p.dim + on - t.ndim for t, p in ((a, pa), (b, pb)) if isinstance(p, Shard) and p.dim < t.ndim - 2),
                  None)
        if bd is not None:
            def at(t):
                j = bd - (on - t.ndim)
                return Shard(j) if j >= 0 and t.shape[j] == g.shape[bd] else None
            sa, sb = at(a), at(b)
            sel = (Shard(bd), sa or R, sb or R, sa or PSUM, sb or PSUM)
        elif isinstance(pa, Shard) and pa.dim == a.ndim - 2:
            sel = (Shard(on - 2), pa, R, pa, PSUM)
        elif isinstance(pb, Shard) and pb.dim == b.ndim - 1:
            sel = (Shard(on - 1), R, pb, PSUM, pb)
        elif (isinstance(pa, Shard) and pa.dim == a.ndim - 1) or (isinstance(pb, Shard) and pb.dim == b.ndim - 2):
            sel = (R, Shard(a.ndim - 1), Shard(b.ndim - 2), Shard(a.ndim - 1), Shard(b.ndim - 2))
        else:
            sel = (R, R, R, R, R)
        ig.append(sel[0])
        ia.append(sel[1])
        ib.append(sel[2])
        oa.append(sel[3])
        ob.append(sel[4])
    by = {"g": ig, "a": ia, "b": ib}
    return Plan([by[r] for r in call.roles()], [tuple(oa), tuple(ob)])


@rule("embedding")
def embedding(call):
    ids, w = call.arg("input"), call.arg("weight")
    if w.ndim != 2 or not isinstance(ids, Tensor):
        raise Decline("unexpected arguments")
    ii, wi = _pos(call, ids), _pos(call, w)
    ins = [[] for _ in call.dts]
    outs, row_axes = [], []
    for m in range(call.mesh.ndim):
        pi, pw = ids._placements[m], w._placements[m]
        if isinstance(pw, Shard) and pw.dim == 1:
            sel = (R, pw, Shard(ids.ndim))
        elif isinstance(pw, Shard) and pw.dim == 0:
            sel = (R, pw, PSUM)
            row_axes.append(m)
        elif isinstance(pi, Shard):
            sel = (pi, R, Shard(pi.dim))
        else:
            sel = (R, R, R)
        ins[ii].append(sel[0])
        ins[wi].append(sel[1])
        outs.append(sel[2])
    if len(row_axes) > 1:
        raise Decline("table rows sharded over several mesh axes")
    run = _vocab_parallel(call, row_axes[0], w) if row_axes else None
    return Plan(ins, tuple(outs), run=run)


def _vocab_parallel(call, m, w):
    """Row-sharded table: each shard looks up the ids it owns, zeros elsewhere (sum over shards = result)."""
    from .spec import chunk_offsets, chunk_sizes
    n = w.shape[0]
    k = call.mesh.shape[m]
    offs, sizes = chunk_offsets(n, k), chunk_sizes(n, k)

    def run(kk, coords, b):
        ids, wl = b.arguments["input"], b.arguments["weight"]
        lo, size = offs[coords[m]], sizes[coords[m]]
        from ..core import backend as _be
        arr = ids._data
        xp = _be.xp_of(arr)
        own = (arr >= lo) & (arr < lo + size)
        if size == 0:
            with _be.device_guard(wl._device):
                z = xp.zeros(tuple(arr.shape) + (wl.shape[1],), dtype=wl._data.dtype)
            return Tensor._make(z, wl._device)
        loc = Tensor._make(xp.where(own, arr - lo, 0), ids._device)
        out = V.embedding(loc, wl)
        mask = Tensor._make(own[..., None].astype(wl._data.dtype), ids._device)
        return V.mul(out, mask)
    return run


@rule("embedding_backward")
def embedding_backward(call):
    g, ids = call.arg("g"), call.arg("ids")
    gi, ii = _pos(call, g), _pos(call, ids)
    ins = [[] for _ in call.dts]
    outs = []
    for m in range(call.mesh.ndim):
        pg, pi = g._placements[m], ids._placements[m]
        bd = next((p.dim for p in (pg, pi) if isinstance(p, Shard) and p.dim < ids.ndim), None)
        if bd is not None:
            sel = (Shard(bd), Shard(bd), PSUM)
        elif isinstance(pg, Shard) and pg.dim == g.ndim - 1:
            sel = (pg, R, Shard(1))
        elif isinstance(pg, Partial) and pg.reduce_op is ReduceOp.SUM:
            sel = (pg, R, PSUM)
        else:
            sel = (R, R, R)
        ins[gi].append(sel[0])
        ins[ii].append(sel[1])
        outs.append(sel[2])
    return Plan(ins, tuple(outs))


@rule("dot", "mv", "outer")
def vector_products(call):
    a, b = call.args[0], call.args[1]
    ia, ib, outs = [], [], []
    for m in range(call.mesh.ndim):
        pa, pb = a._placements[m], b._placements[m]
        if call.name == "outer":
            sel = ((pa, R, Shard(0)) if isinstance(pa, Shard) else (R, pb, Shard(1)) if isinstance(pb, Shard)
                   else (R, R, R))
        elif call.name == "dot":
            sel = (Shard(0), Shard(0), PSUM) if isinstance(pa, Shard) or isinstance(pb, Shard) else (R, R, R)
        elif isinstance(pa, Shard) and pa.dim == 0:
            sel = (pa, R, Shard(0))
        elif (isinstance(pa, Shard) and pa.dim == 1) or isinstance(pb, Shard):
            sel = (Shard(1), Shard(0), PSUM)
        else:
            sel = (R, R, R)
        ia.append(sel[0])
        ib.append(sel[1])
        outs.append(sel[2])
    return Plan([ia, ib] if call.dts[0] is a else [ib, ia], tuple(outs))


def _attn_axes(call, q, tensors):
    """Per mesh axis: a leading (batch/head) dim of ``q`` sharded in q/k/v with equal sizes, or None."""
    n = q.ndim
    picks = []
    for m in range(call.mesh.ndim):
        pick = None
        for t in tensors[:3]:
            p = t._placements[m]
            if isinstance(p, Shard) and t.ndim == n and p.dim < n - 2:
                d = p.dim
                if all(u.ndim == n and u.shape[d] == q.shape[d] for u in tensors[:3]):
                    pick = d
                    break
        picks.append(pick)
    return picks


def _aligned(t, n, d, size):
    """Placement for an attention-mask-like tensor aligned to the right of an n-d query."""
    j = d - (n - t.ndim)
    if j >= 0 and t.shape[j] == size:
        return Shard(j), True
    return R, False


@rule("_scaled_dot_product_attention")
def sdpa(call):
    q, k, v = call.arg("q"), call.arg("k"), call.arg("v")
    picks = _attn_axes(call, q, [q, k, v])
    ins = {r: [] for r in ("q", "k", "v", "attn_mask", "dropout_mask")}
    outs = []
    for m, d in enumerate(picks):
        for r in ("q", "k", "v"):
            ins[r].append(Shard(d) if d is not None else R)
        for r in ("attn_mask", "dropout_mask"):
            t = call.arg(r)
            if isinstance(t, Tensor):
                ins[r].append(_aligned(t, q.ndim, d, q.shape[d])[0] if d is not None else R)
        outs.append(Shard(d) if d is not None else R)
    return Plan([ins[r] for r in call.roles()], tuple(outs))


@rule("scaled_dot_product_attention_backward")
def sdpa_backward(call):
    q, k, v = call.arg("q"), call.arg("k"), call.arg("v")
    mask = call.arg("attn_mask")
    picks = _attn_axes(call, q, [q, k, v])
    ins = {r: [] for r in ("g", "q", "k", "v", "attn_mask", "dropout_mask", "out", "lse")}
    oq, ok, ov, om = [], [], [], []
    for m, d in enumerate(picks):
        for r in ("g", "q", "k", "v"):
            ins[r].append(Shard(d) if d is not None else R)
        if isinstance(call.arg("out"), Tensor):  # the forward's output (only the fused flash path reads it)
            ins["out"].append(Shard(d) if d is not None else R)
        if isinstance(call.arg("lse"), Tensor):  # kept by an unsharded fused forward only
            ins["lse"].append(R)
        mask_full = False
        for r in ("attn_mask", "dropout_mask"):
            t = call.arg(r)
            if not isinstance(t, Tensor):
                continue
            pl, full = _aligned(t, q.ndim, d, q.shape[d]) if d is not None else (R, False)
            ins[r].append(pl)
            if r == "attn_mask":
                mask_full = full
        for o in (oq, ok, ov):
            o.append(Shard(d) if d is not None else R)
        if d is None:
            om.append(R)
        elif isinstance(mask, Tensor) and mask_full:
            om.append(Shard(d - (q.ndim - mask.ndim)))
        else:
            om.append(PSUM)
    return Plan([ins[r] for r in call.roles()], [tuple(oq), tuple(ok), tuple(ov), tuple(om)])


@rule("outer_backward")
def outer_backward(call):
    g, a, b = call.args[0], call.args[1], call.args[2]
    ig, ia, ib, oa, ob = [], [], [], [], []
    for m in range(call.mesh.ndim):
        pa, pb, pg = a._placements[m], b._placements[m], g._placements[m]
        if isinstance(pa, Shard) or (isinstance(pg, Shard) and pg.dim == 0):
            sel = (Shard(0), Shard(0), R, Shard(0), PSUM)
        elif isinstance(pb, Shard) or (isinstance(pg, Shard) and pg.dim == 1):
            sel = (Shard(1), R, Shard(0), PSUM, Shard(0))
        else:
            sel = (R, R, R, R, R)
        for lst, v in zip((ig, ia, ib, oa, ob), sel):
            lst.append(v)
    by = {"g": ig, "a": ia, "b": ib}
    return Plan([by[r] for r in call.roles()], [tuple(oa), tuple(ob)])
