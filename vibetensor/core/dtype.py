"""dtypes and PyTorch's type-promotion rules.

Promotion (as torch.result_type): operands fall in three priority tiers -- tensors with dims, 0-dim
tensors, Python scalars. The highest category present (bool < integer < floating) wins; within the
winning category, the highest tier that holds that category decides the dtype, promoting between
its members. A Python float joining integer tensors gives the default dtype (float32).
"""
from __future__ import annotations

import numpy as np

try:
    import ml_dtypes
    _BF16_NP = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a hard dependency
    _BF16_NP = None


class dtype:
    __slots__ = ("name", "np", "itemsize", "is_floating_point", "is_signed", "_cat", "_rank")

    def __init__(self, name, np_dtype, cat, rank):
        self.name = name
        self.np = np.dtype(np_dtype) if np_dtype is not None else None
        self.itemsize = self.np.itemsize if self.np is not None else 2
        self.is_floating_point = cat == 2
        self.is_signed = name not in ("uint8", "bool")
        self._cat = cat    # 0 bool, 1 integer, 2 floating
        self._rank = rank  # order inside the category

    def __repr__(self):
        return f"vibetensor.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))

    @property
    def is_complex(self):
        return False


bool_ = dtype("bool", np.bool_, 0, 0)
uint8 = dtype("uint8", np.uint8, 1, 0)
int8 = dtype("int8", np.int8, 1, 1)
int16 = dtype("int16", np.int16, 1, 2)
int32 = dtype("int32", np.int32, 1, 3)
int64 = dtype("int64", np.int64, 1, 4)
float16 = dtype("float16", np.float16, 2, 0)
bfloat16 = dtype("bfloat16", _BF16_NP, 2, 1)
float32 = dtype("float32", np.float32, 2, 2)
float64 = dtype("float64", np.float64, 2, 3)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
FLOATING = (float16, bfloat16, float32, float64)
_NAMES = {d.name: d for d in ALL}
_NAMES.update({"bool": bool_, "half": float16, "float": float32, "double": float64, "long": int64,
               "int": int32, "short": int16})
_FROM_NP = {d.np: d for d in ALL if d.np is not None}

_default_float = float32


def _by_name(name: str) -> dtype:
    return _NAMES[name]


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d: dtype) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: {d} is not a floating dtype; use float32 or float64")
    _default_float = d


def as_dtype(d) -> dtype:
    """vt dtype from a vt dtype, a name, a numpy dtype or a torch dtype."""
    if isinstance(d, dtype):
        return d
    if d is None:
        return _default_float
    if d is bool:
        return bool_
    if d is float:
        return float64  # Python's float is double precision (PyTorch: dtype=float is float64)
    if d is int:
        return int64
    if isinstance(d, str):
        hit = _NAMES.get(d.replace("torch.", "").replace("vibetensor.", ""))
        if hit is not None:
            return hit
        raise TypeError(f"unknown dtype {d!r}; use one of {', '.join(x.name for x in ALL)}")
    if type(d).__module__ == "torch":
        return as_dtype(str(d))
    try:
        nd = np.dtype(d)
    except TypeError:
        raise TypeError(f"cannot interpret {d!r} as a dtype; use one of {', '.join(x.name for x in ALL)}") from None
    return from_numpy_dtype(nd)


def from_numpy_dtype(nd) -> dtype:
    hit = _FROM_NP.get(nd)
    if hit is None:
        hit = _FROM_NP.get(np.dtype(nd))
    if hit is None:
        raise TypeError(f"numpy dtype {nd} has no vibetensor equivalent; supported: "
                        f"{', '.join(x.name for x in ALL)}")
    return hit


_PROMOTE_CACHE: dict = {}


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both can be cast to, by PyTorch's table (uint8+int8 -> int16, f16+bf16 -> f32)."""
    if a is b:
        return a
    key = (a, b)
    hit = _PROMOTE_CACHE.get(key)
    if hit is not None:
        return hit
    if a._cat != b._cat:
        out = a if a._cat > b._cat else b
    elif a._cat == 1:
        if {a, b} == {uint8, int8}:
            out = int16
        elif uint8 in (a, b):
            out = a if b is uint8 else b
        else:
            out = a if a._rank > b._rank else b
    elif a._cat == 2:
        out = float32 if {a, b} == {float16, bfloat16} else (a if a._rank > b._rank else b)
    else:
        out = a
    _PROMOTE_CACHE[key] = out
    return out


def _scalar_dtype(x) -> dtype:
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return int64
    return _default_float


def result_type(*operands) -> dtype:
    """torch.result_type over tensors (anything with ``.dtype`` and ``.ndim``) and Python scalars."""
    best = [None, None, None]  # per tier: dims, zero-dim, scalar
    for x in operands:
        d = getattr(x, "_dtype", None)
        if d is not None:
            tier = 0 if x.ndim > 0 else 1
        elif isinstance(x, (bool, int, float)):
            d, tier = _scalar_dtype(x), 2
        elif x is None:
            continue
        else:
            d, tier = as_dtype(getattr(x, "dtype")), 0
        cur = best[tier]
        best[tier] = d if cur is None else promote_types(cur, d)
    present = [b for b in best if b is not None]
    if not present:
        raise TypeError("result_type: no operands")
    top_cat = max(b._cat for b in present)
    for b in best:
        if b is not None and b._cat == top_cat:
            return b
    raise AssertionError("unreachable")


def is_floating(d: dtype) -> bool:
    return d._cat == 2
