"""Placements: how a tensor is laid out along one mesh axis (``Shard``, ``Replicate``, ``Partial``)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ReduceOp(str, Enum):
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"


class Placement:
    def is_shard(self, dim: int | None = None) -> bool:
        return False

    def is_replicate(self) -> bool:
        return False

    def is_partial(self) -> bool:
        return False


@dataclass(frozen=True)
class Shard(Placement):
    """Split along tensor dim ``dim`` in torch.chunk style (ceil-sized chunks; trailing ones may be short)."""
    dim: int

    def is_shard(self, dim=None):
        return dim is None or dim == self.dim

    def __repr__(self):
        return f"Shard(dim={self.dim})"


@dataclass(frozen=True)
class Replicate(Placement):
    """Every device along the axis holds the whole tensor."""

    def is_replicate(self):
        return True

    def __repr__(self):
        return "Replicate()"


@dataclass(frozen=True, init=False)
class Partial(Placement):
    """Every device holds a contribution; the tensor is their ``reduce_op`` (sum, avg, max, min)."""
    reduce_op: ReduceOp

    def __init__(self, reduce_op="sum"):
        try:
            op = ReduceOp(reduce_op.value if isinstance(reduce_op, ReduceOp) else str(reduce_op).lower())
        except ValueError:
            raise ValueError(f"Partial: reduce_op must be one of sum, avg, max, min; got {reduce_op!r}") from None
        object.__setattr__(self, "reduce_op", op)

    def is_partial(self):
        return True

    def __repr__(self):
        return f"Partial({self.reduce_op.value})"


def normalize(placements, mesh_ndim: int, tensor_ndim: int, where: str = "placements") -> tuple:
    """A tuple of one placement per mesh axis; Shard dims wrapped into 0..ndim-1, with clear errors."""
    if isinstance(placements, Placement):
        placements = (placements,)
    placements = tuple(placements)
    if len(placements) > mesh_ndim:
        raise ValueError(f"{where}: {len(placements)} placements {list(placements)} for a {mesh_ndim}-d mesh; "
                         f"give one placement per mesh axis")
    placements = placements + (Replicate(),) * (mesh_ndim - len(placements))
    out = []
    for p in placements:
        if not isinstance(p, Placement):
            raise TypeError(f"{where}: {p!r} is not a placement; use Shard(dim), Replicate() or Partial(op)")
        if isinstance(p, Shard):
            d = p.dim
            if not isinstance(d, int) or not -max(tensor_ndim, 1) <= d < max(tensor_ndim, 1) or tensor_ndim == 0:
                raise IndexError(f"{where}: Shard(dim={d}) is out of range for a {tensor_ndim}-d tensor "
                                 f"(valid dims: {-tensor_ndim}..{tensor_ndim - 1})" if tensor_ndim else
                                 f"{where}: Shard(dim={d}) cannot shard a 0-d tensor; use Replicate()")
            p = Shard(d % tensor_ndim)
        out.append(p)
    return tuple(out)


def chunk_sizes(n: int, k: int) -> list[int]:
    """torch.chunk-style split of ``n`` into ``k`` pieces: ceil(n/k) each, the rest short or empty."""
    c = -(-n // k) if n else 0
    out = []
    left = n
    for _ in range(k):
        s = min(c, max(left, 0))
        out.append(s)
        left -= s
    return out


def chunk_offsets(n: int, k: int) -> list[int]:
    sizes = chunk_sizes(n, k)
    offs, acc = [], 0
    for s in sizes:
        offs.append(acc)
        acc += s
    return offs
