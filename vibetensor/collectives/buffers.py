"""vt tensors <-> the flat contiguous arrays the transports move (bool carried as uint8)."""
from __future__ import annotations

from ..core import backend as _be
from ..core.tensor import Tensor
from ..errors import DeviceMismatchError, ShapeError
from .types import check_dtype, wire_array


class Flat:
    """A tensor's data as a flat contiguous array; ``commit()`` writes back (when a copy was needed)
    and bumps the tensor's version (collectives are in-place writes)."""

    __slots__ = ("t", "arr", "copied")

    def __init__(self, t: Tensor, need_copy=False):
        a = t._data
        self.t = t
        self.copied = need_copy or not a.flags.c_contiguous
        if self.copied:
            xp = _be.xp_of(a)
            a = xp.ascontiguousarray(a).copy() if need_copy else xp.ascontiguousarray(a)
        self.arr = wire_array(a.reshape(-1))

    def commit(self):
        t = self.t
        if self.copied:
            t._data[...] = self.arr.reshape(t._data.shape).view(t._data.dtype)
        t._vc.v += 1


def check_tensor(t, opname, what="tensor"):
    if not isinstance(t, Tensor):
        raise TypeError(f"{opname}: {what} must be a vibetensor Tensor, got {type(t).__name__}")
    if t._is_sharded:
        raise TypeError(f"{opname}: {what} is a sharded DTensor; collectives take local tensors "
                        f"(use .to_local() / the DTensor's redistribute)")
    check_dtype(t.dtype, opname)


def check_same(ts, opname):
    t0 = ts[0]
    for i, t in enumerate(ts[1:], 1):
        if tuple(t.shape) != tuple(t0.shape) or t.dtype is not t0.dtype:
            raise ShapeError(f"{opname}: local tensor {i} has shape {tuple(t.shape)} dtype {t.dtype.name} but "
                             f"local tensor 0 has shape {tuple(t0.shape)} dtype {t0.dtype.name}; all must match")


def check_devices(ts, devices, opname, backend):
    for i, (t, d) in enumerate(zip(ts, devices)):
        if t.device.type != d.type or (d.index is not None and t.device.index != d.index):
            raise DeviceMismatchError(
                f"{opname}: tensor {i} is on {t.device} but backend {backend!r} expects it on {d} for this "
                f"rank; move it with .to('{d}')")
