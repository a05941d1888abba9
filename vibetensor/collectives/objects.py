"""Object collectives (pickled Python objects over the group's host transport), as torch.distributed's."""
from __future__ import annotations

import pickle

import numpy as np

from ..core import factories as F
from .api import _require


def _one_rank_per_process(g, name):
    if len(g.local_ranks) != 1:
        raise NotImplementedError(f"{name} on a group driving several local ranks (local backend): objects "
                                  f"already live in this one process")


def _to_tensor(obj):
    return F.from_numpy(np.frombuffer(pickle.dumps(obj), dtype=np.uint8).copy())


def all_gather_object(object_list, obj, group=None):
    """``object_list[r]`` = rank r's ``obj`` (every object must pickle)."""
    g = _require(group)
    _one_rank_per_process(g, "all_gather_object")
    n = g.size()
    if len(object_list) != n:
        raise ValueError(f"all_gather_object: object_list must have world_size={n} entries, got {len(object_list)}")
    data = _to_tensor(obj)
    sizes = F.zeros((n,), dtype="int64")
    g.all_gather_into_tensor(sizes, F.tensor([data.numel()], dtype="int64"))
    m = int(sizes.numpy().max())
    padded = F.zeros((m,), dtype="uint8")
    padded._data[:data.numel()] = data._data
    out = F.zeros((n * m,), dtype="uint8")
    g.all_gather_into_tensor(out, padded)
    raw = out.numpy()
    for r, k in enumerate(sizes.numpy()):
        object_list[r] = pickle.loads(raw[r * m:r * m + int(k)].tobytes())


def broadcast_object_list(object_list, src=0, group=None):
    """Replace ``object_list``'s entries with those of rank ``src`` (same length everywhere)."""
    g = _require(group)
    _one_rank_per_process(g, "broadcast_object_list")
    root = g._root(src, "broadcast_object_list", "src")
    mine = g.rank() == root
    data = _to_tensor(list(object_list)) if mine else None
    size = F.tensor([data.numel() if mine else 0], dtype="int64")
    g.broadcast(size, src=src)
    buf = data if mine else F.zeros((int(size.item()),), dtype="uint8")
    g.broadcast(buf, src=src)
    if not mine:
        got = pickle.loads(buf.numpy().tobytes())
        if len(got) != len(object_list):
            raise ValueError(f"broadcast_object_list: rank {src} sent {len(got)} objects but this rank's list has "
                             f"{len(object_list)} entries; use lists of the same length")
        object_list[:] = got
