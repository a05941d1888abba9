"""Multi-process meshes: each process holds the shard of its one mesh position; data moves through
``vibetensor.collectives`` on one sub-group per mesh axis (``DeviceMesh.axis_group``).

Any layout change that needs communication becomes: collapse every mesh axis (last to first, as the
single-process ``layout.join`` does) with the axis group's collective -- Shard: all_gather (uneven
shards padded to the largest, then trimmed), Partial: all_reduce, Replicate: nothing -- so every rank
holds the global value, then each rank slices its own block (``layout.split``). Simple and correct for
every pair of placements; it moves more bytes than a direct reduce_scatter would.
"""
from __future__ import annotations

from ..core import backend as _be
from ..core import factories as F
from ..core.tensor import Tensor
from .. import observe as _obs
from .spec import Partial, Replicate, ReduceOp, Shard


def _collectives():
    from .. import collectives
    return collectives


def _op(r):
    C = _collectives()
    return {ReduceOp.SUM: C.ReduceOp.SUM, ReduceOp.AVG: C.ReduceOp.AVG, ReduceOp.MAX: C.ReduceOp.MAX,
            ReduceOp.MIN: C.ReduceOp.MIN}[r]


def _record(nbytes, why):
    _obs.counter_add("fabric.collectives")
    _obs.counter_add("fabric.collective_bytes", nbytes)
    if _obs.enabled():
        _obs.record(_obs.EventKind.FABRIC_COPY, why, nbytes=nbytes)


def _contig(t: Tensor) -> Tensor:
    with _be.device_guard(t._device):
        return Tensor._make(_be.xp_of(t._data).ascontiguousarray(t._data).copy(), t._device)


def join(local: Tensor, gshape, mesh, placements) -> Tensor:
    """The global tensor on every rank of ``mesh`` from this rank's shard."""
    from .layout import local_shape
    C = _collectives()
    k = mesh.local_indices()[0]
    c = mesh.coords(k)
    pl = list(placements)
    cur = _contig(local)
    for m in range(mesh.ndim - 1, -1, -1):
        p = pl[m]
        if isinstance(p, Replicate):
            continue
        g = mesh.axis_group(m)
        if isinstance(p, Partial):
            _record(int(cur._data.nbytes), "all_reduce")
            C.all_reduce(cur, op=_op(p.reduce_op), group=g)
        else:
            d = p.dim
            n = mesh.shape[m]
            after = pl[:m + 1] + [Replicate()] * (mesh.ndim - m - 1)
            sizes = [local_shape(gshape, mesh, after, c[:m] + (i,) + c[m + 1:])[d] for i in range(n)]
            mx = max(sizes)
            xp = _be.xp_of(cur._data)
            shp = list(cur.shape)
            with _be.device_guard(cur._device):
                if shp[d] != mx:  # uneven: pad to the largest shard
                    pad = [(0, 0)] * len(shp)
                    pad[d] = (0, mx - shp[d])
                    cur = Tensor._make(xp.pad(cur._data, pad), cur._device)
                moved = Tensor._make(xp.ascontiguousarray(xp.moveaxis(cur._data, d, 0)), cur._device)
                out = F.empty((n,) + tuple(moved.shape), dtype=cur._dtype, device=cur._device)
            _record(int(out._data.nbytes), "all_gather")
            C.all_gather_into_tensor(out, moved, group=g)
            with _be.device_guard(cur._device):
                # new_group orders members by world rank; mesh position i is rank ranks[i]
                gi = [g.world_ranks.index(mesh.process_ranks[mesh.flat_index(c[:m] + (i,) + c[m + 1:])])
                      for i in range(n)]
                parts = [xp.moveaxis(out._data[gi[i]][:sizes[i]], 0, d) for i in range(n)]
                cur = Tensor._make(xp.ascontiguousarray(xp.concatenate(parts, axis=d)), cur._device)
        pl[m] = Replicate()
    return cur


def global_shape(local_shape, mesh, placements):
    """Global shape from this rank's shard: sharded dims sum the shard sizes along their axes (one small
    all_gather of shapes over the world group)."""
    shape = list(local_shape)
    if not any(isinstance(p, Shard) for p in placements):
        return tuple(shape)
    C = _collectives()
    n = mesh.size()
    mine = F.tensor([shape or [0]], dtype="int64")
    out = F.zeros((n, max(len(shape), 1)), dtype="int64")
    C.all_gather_into_tensor(out, mine)
    allshapes = [tuple(int(v) for v in row[:len(shape)]) for row in out.numpy()]
    from .layout import global_shape as _gs
    # default group rank r holds mesh position process_ranks.index(r)
    by_pos = [allshapes[r] for r in mesh.process_ranks]
    return _gs(by_pos, mesh, placements, _all=True)


def broadcast(t: Tensor, mesh) -> Tensor:
    """``t`` as computed on the rank at mesh position 0 (fallback results stay identical everywhere)."""
    t = _contig(t)
    _record(int(t._data.nbytes), "broadcast")
    _collectives().broadcast(t, src=mesh.process_ranks[0])
    return t
