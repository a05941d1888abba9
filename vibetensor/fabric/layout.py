"""Layout math and data movement for sharded tensors (in one process every mesh device is local; a
multi-process mesh holds only this rank's shard and moves data through ``mp``).

A DTensor's local shards sit in mesh order (row-major). ``split`` lays a global tensor out over a
mesh (mesh axis 0 chunks first, as torch does for nested shards); ``join`` inverts it by collapsing
mesh axes from the last to the first (concatenate Shard, take Replicate, reduce Partial). Every
cross-device copy goes through ``move`` and is recorded as a FABRIC_COPY event with its bytes.
"""
from __future__ import annotations

import math

from ..core import backend as _be
from ..core.grad_mode import no_grad
from ..core.tensor import Tensor
from .. import observe as _obs
from .spec import Partial, Replicate, ReduceOp, Shard, chunk_offsets, chunk_sizes
from . import multidev


def local_box(gshape, mesh, placements, coords):
    """(offsets, sizes) of the block a device at ``coords`` holds (Partial/Replicate take the whole dim)."""
    offs = [0] * len(gshape)
    sizes = list(gshape)
    for m, p in enumerate(placements):
        if isinstance(p, Shard):
            d = p.dim
            k = mesh.shape[m]
            offs[d] += chunk_offsets(sizes[d], k)[coords[m]]
            sizes[d] = chunk_sizes(sizes[d], k)[coords[m]]
    return offs, sizes


def local_shape(gshape, mesh, placements, coords):
    return tuple(local_box(gshape, mesh, placements, coords)[1])


def global_shape(local_shapes, mesh, placements, _all=False):
    """Global shape from every shard's local shape (sums shard sizes along each sharded dim); on a
    multi-process mesh from this rank's one shard (the others' shapes come by a collective)."""
    if mesh.is_multi_process and not _all:
        from . import mp
        return mp.global_shape(local_shapes[0], mesh, placements)
    shape = list(local_shapes[0])
    for d in range(len(shape)):
        axes = [m for m, p in enumerate(placements) if isinstance(p, Shard) and p.dim == d]
        if not axes:
            continue
        tot = 0
        for k in range(mesh.size()):
            c = mesh.coords(k)
            if all(c[m] == 0 for m in range(mesh.ndim) if m not in axes):
                tot += local_shapes[k][d]
        shape[d] = tot
    return tuple(shape)


def record_copy(nbytes, src, dst, why=""):
    _obs.counter_add("fabric.copies")
    _obs.counter_add("fabric.copy_bytes", nbytes)
    _obs.counter_add(f"fabric.device.{src}.bytes_read_remote", nbytes)
    _obs.counter_add(f"fabric.device.{dst}.bytes_written_remote", nbytes)
    if _obs.enabled():
        _obs.record(_obs.EventKind.FABRIC_COPY, why or "copy", nbytes=nbytes, device=str(dst), src=str(src))


def move(t: Tensor, dev, why="") -> Tensor:
    """``t`` on ``dev`` (a recorded peer/host copy when it lives elsewhere)."""
    if t._device == dev:
        return t
    if t._device.type == "cuda" and dev.type == "cuda":
        _ensure_peer_access()
    multidev.sync(t._device)
    if t._device.type == "cuda" and not t._data.flags.c_contiguous:
        with _be.device_guard(t._device):  # a strided slice: pack it on its own GPU, then one peer copy
            t = Tensor._make(_be.xp_of(t._data).ascontiguousarray(t._data), t._device)
    with no_grad():
        out = t.to(dev)
    record_copy(int(t._data.nbytes), t._device, dev, why)
    return out


_peer_done = [False]


def _ensure_peer_access():
    """Enable peer access inside each clique once, before the first GPU-to-GPU copy."""
    if _peer_done[0]:
        return
    _peer_done[0] = True
    from .nvml import enable_peer_access
    from .topo import topology
    try:
        enable_peer_access(topology("cuda"))
    except Exception as e:  # noqa: BLE001 - copies still work (staged); say why once
        _obs.counter_add("fabric.peer_access_errors")
        if _obs.enabled():
            _obs.record(_obs.EventKind.FABRIC_FALLBACK, "peer_access", extra={"reason": str(e)})


def _slice(t: Tensor, offs, sizes) -> Tensor:
    idx = tuple(slice(o, o + s) for o, s in zip(offs, sizes))
    a = t._data[idx] if idx else t._data
    return Tensor._make(a, t._device)


def _copy_on(t: Tensor, dev) -> Tensor:
    with _be.device_guard(dev):  # CuPy copies onto the current device
        return Tensor._make(t._data.copy(), dev)


def _zeros_like_shape(t: Tensor, shape, dev):
    xp = _be.xp_for(dev)
    with _be.device_guard(dev):
        arr = xp.zeros(tuple(shape), dtype=t._data.dtype)
    return Tensor._make(arr, dev)


def split(t: Tensor, mesh, placements, why="distribute") -> list:
    """Local shards of global tensor ``t`` for ``placements`` (copies onto each mesh device)."""
    out = []
    gshape = tuple(t.shape)
    for k in mesh.local_indices():  # in several processes: only this process's position
        dev = mesh.devices[k]
        c = mesh.coords(k)
        offs, sizes = local_box(gshape, mesh, placements, c)
        zero = any(isinstance(p, Partial) and p.reduce_op is ReduceOp.SUM and c[m] != 0
                   for m, p in enumerate(placements))
        if zero:
            out.append(_zeros_like_shape(t, sizes, dev))
            continue
        piece = _slice(t, offs, sizes)
        if dev == t._device:
            out.append(_copy_on(piece, dev))
        else:
            out.append(move(piece, dev, why))
    return out


def _reduce(op: ReduceOp, parts: list, dev) -> Tensor:
    parts = [move(p, dev, "reduce") for p in parts]
    xp = _be.xp_of(parts[0]._data)
    with _be.device_guard(dev):
        acc = parts[0]._data.copy()
        for p in parts[1:]:
            if op in (ReduceOp.SUM, ReduceOp.AVG):
                acc = acc + p._data
            elif op is ReduceOp.MAX:
                acc = xp.maximum(acc, p._data)
            else:
                acc = xp.minimum(acc, p._data)
        if op is ReduceOp.AVG:
            acc = (acc / len(parts)).astype(parts[0]._data.dtype, copy=False)
    return Tensor._make(acc, dev)


def _concat(parts: list, d: int, dev) -> Tensor:
    """Concatenate shards onto ``dev`` with one copy per remote shard: straight into the output on
    virtual CPU devices (host memory all round) and, along dim 0, by peer copies into the output's
    slices on CUDA; other cases move each shard first, then concatenate."""
    p0 = parts[0]._data
    same = all(p._data.dtype == p0.dtype for p in parts)
    if same and dev.type == "cpu" and all(p._device.type == "cpu" for p in parts):
        for p in parts:
            if p._device != dev:
                record_copy(int(p._data.nbytes), p._device, dev, "gather")
        return Tensor._make(_be.np.concatenate([p._data for p in parts], axis=d), dev)
    if same and dev.type == "cuda" and d == 0 and all(p._device.type == "cuda" and p._data.flags.c_contiguous
                                                      for p in parts):
        cp = _be.cupy_module()
        with _be.device_guard(dev):
            out = cp.empty((sum(p._data.shape[0] for p in parts),) + tuple(p0.shape[1:]), dtype=p0.dtype)
            stream = cp.cuda.get_current_stream()
            off = 0
            for p in parts:
                n = int(p._data.nbytes)
                if p._device != dev:
                    _ensure_peer_access()
                    multidev.sync(p._device)
                    record_copy(n, p._device, dev, "gather")
                if n:  # UVA: one async copy from any device into this slice, ordered on dev's stream
                    (out.data + off).copy_from_device_async(p._data.data, n, stream)
                off += n
        return Tensor._make(out, dev)
    parts = [move(p, dev, "gather") for p in parts]
    with _be.device_guard(dev):
        arr = _be.xp_of(parts[0]._data).concatenate([p._data for p in parts], axis=d)
    return Tensor._make(arr, dev)


def join(locals_: list, mesh, placements, root=None, gshape=None) -> Tensor:
    """The global tensor from local shards, assembled on ``root`` (default: the first mesh device);
    on a multi-process mesh every rank gets it (collectives along each mesh axis)."""
    if mesh.is_multi_process:
        from . import mp
        if gshape is None:
            gshape = global_shape([tuple(x.shape) for x in locals_], mesh, placements)
        return mp.join(locals_[0], gshape, mesh, placements)
    vals = {mesh.coords(k): t for k, t in enumerate(locals_)}
    for m in range(mesh.ndim - 1, -1, -1):
        p = placements[m]
        nxt = {}
        prefixes = sorted({c[:m] for c in vals})
        for pre in prefixes:
            group = [vals[pre + (i,)] for i in range(mesh.shape[m])]
            dev = group[0]._device if root is None or m else root
            if isinstance(p, Shard):
                v = _concat(group, p.dim, dev)
            elif isinstance(p, Partial):
                v = _reduce(p.reduce_op, group, dev)
            else:
                v = move(group[0], dev, "gather")
            nxt[pre] = v
        vals = nxt
    out = vals[()]
    if root is not None and out._device != root:
        out = move(out, root, "gather")
    return out


def redistribute_locals(locals_: list, gshape, mesh, src, dst) -> list:
    """Local shards for placements ``dst`` from shards laid out as ``src``."""
    if tuple(src) == tuple(dst):
        return list(locals_)
    if _local_only(src, dst):
        out = []
        for k, t in zip(mesh.local_indices(), locals_):
            c = mesh.coords(k)
            # the block this device holds under dst, relative to its block under src
            so, _ = local_box(gshape, mesh, src, c)
            do, ds = local_box(gshape, mesh, dst, c)
            zero = any(isinstance(q, Partial) and q.reduce_op is ReduceOp.SUM and not isinstance(p, Partial)
                       and c[m] != 0 for m, (p, q) in enumerate(zip(src, dst)))
            if zero:
                out.append(_zeros_like_shape(t, ds, t._device))
            else:
                piece = _slice(t, [a - b for a, b in zip(do, so)], ds)
                out.append(_copy_on(piece, t._device))
        return out
    if mesh.is_multi_process:
        from . import mp
        return split(mp.join(locals_[0], gshape, mesh, src), mesh, dst, why="redistribute")
    ax = _single_allgather(src, dst)
    if ax is not None:
        return _allgather(locals_, mesh, ax, src[ax].dim)
    full = join(locals_, mesh, src)
    return split(full, mesh, dst, why="redistribute")


def _single_allgather(src, dst):
    """The mesh axis of a plain Shard(d) -> Replicate change (d sharded by no other axis), else None."""
    diff = [m for m, (p, q) in enumerate(zip(src, dst)) if p != q]
    if len(diff) != 1:
        return None
    m = diff[0]
    p, q = src[m], dst[m]
    if not (isinstance(p, Shard) and isinstance(q, Replicate)):
        return None
    if any(isinstance(x, Shard) and x.dim == p.dim for i, x in enumerate(src) if i != m):
        return None
    return m


def _allgather(locals_, mesh, m, d):
    """Every device concatenates the shards of its group along mesh axis ``m`` (direct peer copies,
    no detour through one root device)."""
    out = []
    for k, t in enumerate(locals_):
        c = mesh.coords(k)
        group = [locals_[mesh.flat_index(c[:m] + (i,) + c[m + 1:])] for i in range(mesh.shape[m])]
        out.append(_concat(group, d, t._device))
    return out


def _local_only(src, dst) -> bool:
    """Changes that need no communication: Replicate -> Shard / Partial on some axes, the sharded tensor
    dims not sharded by any other axis (so chunking commutes)."""
    for m, (p, q) in enumerate(zip(src, dst)):
        if p == q:
            continue
        if not isinstance(p, Replicate):
            return False
        if isinstance(q, Shard):
            others = [x for i, x in enumerate(src) if i != m] + [x for i, x in enumerate(dst) if i != m]
            if any(isinstance(x, Shard) and x.dim == q.dim for x in others):
                return False
    return True


def nbytes_of(shape, itemsize) -> int:
    return int(math.prod(shape)) * int(itemsize)
