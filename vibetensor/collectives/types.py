"""ReduceOp, dtype support table, P2POp, and what the transports agree on."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..core import dtype as _dt
from ..errors import DTypeError


class ReduceOp(str, Enum):
    SUM = "sum"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    AVG = "avg"

    def __repr__(self):
        return f"ReduceOp.{self.name}"


_OP_ALIASES = {"sum": ReduceOp.SUM, "product": ReduceOp.PRODUCT, "prod": ReduceOp.PRODUCT, "min": ReduceOp.MIN,
               "max": ReduceOp.MAX, "avg": ReduceOp.AVG, "mean": ReduceOp.AVG}


def as_reduce_op(op) -> ReduceOp:
    if isinstance(op, ReduceOp):
        return op
    if type(op).__module__.startswith("torch"):  # torch.distributed.ReduceOp.SUM and friends
        op = str(op).rsplit(".", 1)[-1]
    hit = _OP_ALIASES.get(str(op).lower()) if isinstance(op, str) or hasattr(op, "lower") else None
    if hit is None:
        raise ValueError(f"unknown reduce op {op!r}; use ReduceOp.SUM, PRODUCT, MIN, MAX or AVG "
                         f"(or the strings 'sum', 'product', 'min', 'max', 'avg')")
    return hit


SUPPORTED = (_dt.float16, _dt.bfloat16, _dt.float32, _dt.float64, _dt.int32, _dt.int64, _dt.uint8, _dt.bool_)
_CODES = {d.name: i for i, d in enumerate(SUPPORTED)}


def dtype_code(d) -> int:
    return _CODES[d.name]


def check_dtype(d, opname: str) -> None:
    if d.name not in _CODES:
        raise DTypeError(f"{opname}: dtype {d.name} is not supported by collectives; supported: "
                         f"{', '.join(x.name for x in SUPPORTED)} (convert with .to(vt.float32) or .to(vt.int64))")


def effective_op(op: ReduceOp, d, opname: str) -> ReduceOp:
    """bool is carried as uint8: SUM is logical or (MAX), PRODUCT logical and (MIN)."""
    if op is ReduceOp.AVG and not d.is_floating_point:
        raise DTypeError(f"{opname}: ReduceOp.AVG needs a floating-point tensor, got {d.name}; "
                         f"use SUM and divide, or convert with .float()")
    if d is _dt.bool_:
        return {ReduceOp.SUM: ReduceOp.MAX, ReduceOp.PRODUCT: ReduceOp.MIN}.get(op, op)
    return op


def wire_array(arr):
    """The array as the transports carry it (bool viewed as uint8; same memory)."""
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    return arr


@dataclass
class P2POp:
    """``P2POp(vt.collectives.isend, tensor, peer, group=None, tag=0)`` for batch_isend_irecv."""
    op: object
    tensor: object
    peer: int
    group: object = None
    tag: int = 0

    def __post_init__(self):
        name = getattr(self.op, "__name__", str(self.op))
        if name not in ("isend", "irecv", "send", "recv"):
            raise ValueError(f"P2POp: op must be vt.collectives.isend or vt.collectives.irecv, got {self.op!r}")
        self.kind = "send" if name in ("isend", "send") else "recv"
