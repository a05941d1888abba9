"""Helpers for the shape and index op files: argument binding for backward formulas, dtype
promotion across a list of arrays, index bounds checks."""
from __future__ import annotations

import inspect

from .. import dtype as _dt
from ..dispatcher import defop

_SIGS: dict = {}
_SPECS: dict = {}  # qualname -> (positional names, all names, defaults) for signatures without *args/**kwargs
_P = inspect.Parameter


def defop_sig(name, **kw):
    """``defop`` that also remembers the kernel's signature, so backward can read arguments by name
    whether the caller passed them positionally or as keywords (``params``)."""
    def deco(fn):
        op = defop(name, **kw)(fn)
        sig = _SIGS[op.qualname] = inspect.signature(fn)
        ps = list(sig.parameters.values())
        if all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY) for p in ps):
            _SPECS[op.qualname] = (tuple(p.name for p in ps if p.kind is _P.POSITIONAL_OR_KEYWORD),
                                   frozenset(p.name for p in ps),
                                   {p.name: p.default for p in ps if p.default is not _P.empty})
        return op
    return deco


def params(ctx, op):
    """The op's arguments at forward time by parameter name (tensors as saved aliases / TensorMeta).
    Plain signatures are matched by hand: ``Signature.bind`` costs more than most backward formulas."""
    spec = _SPECS.get(op.qualname)
    args, kw = ctx.args, ctx.kwargs
    if spec is not None and len(args) <= len(spec[0]):
        pos, names, defaults = spec
        out = dict(zip(pos, args))
        ok = True
        for k, v in kw.items():
            if k in out or k not in names:
                ok = False  # a duplicate or unknown name: bind raises the usual TypeError
                break
            out[k] = v
        if ok and len(out) < len(names):
            for k, v in defaults.items():
                if k not in out:
                    out[k] = v
            ok = len(out) == len(names)
        if ok:
            return out
    b = _SIGS[op.qualname].bind(*args, **kw)
    b.apply_defaults()
    return b.arguments


def promote_arrays(arrays):
    """PyTorch promotion over backend arrays (for list ops like cat/stack; scalars do not take part)."""
    dt = _dt.from_numpy_dtype(arrays[0].dtype)
    for a in arrays[1:]:
        dt = _dt.promote_types(dt, _dt.from_numpy_dtype(a.dtype))
    return [a if a.dtype == dt.np else a.astype(dt.np) for a in arrays], dt


def check_index_dtype(opname, idx, what="index"):
    if idx.dtype.kind not in "iu":
        raise IndexError(f"{opname}: {what} must be an integer (int64/int32) tensor, got dtype "
                         f"{_dt.from_numpy_dtype(idx.dtype).name}")


def checked_index(opname, xp, idx, size, dim=None, what="index", negative=False):
    """Bounds-checked integer index array; ``negative=True`` lets -size..-1 count from the end (as PyTorch's
    take and index_fill do; gather, scatter, index_select and index_add refuse them). Raises
    IndexError naming the first out-of-range index and the size: one sync on CUDA, as a clear error
    beats a device-side assert."""
    check_index_dtype(opname, idx, what)
    if idx.size == 0:
        return idx.astype("int64") if idx.dtype.kind == "u" else idx
    lo, hi = int(idx.min()), int(idx.max())
    low = -size if negative else 0
    if lo < low or hi >= size:
        bad = hi if hi >= size else lo
        where = f" for dimension {dim}" if dim is not None else ""
        raise IndexError(f"{opname}: {what} {bad} is out of bounds{where} with size {size} "
                         f"(valid: {low}..{size - 1})")
    if idx.dtype.kind == "u":
        return idx.astype("int64")
    if lo < 0:
        return xp.where(idx < 0, idx + size, idx)
    return idx


def add_at(xp, out, idx, val):
    """``out[idx] += val`` in place, repeated indices accumulating (np.add.at semantics), on numpy and
    CuPy. CUDA atomics exist for few dtypes: others accumulate in a wider one (int64 as uint64, whose
    wrap-around addition gives the same bits)."""
    import numpy as np
    dt = out.dtype
    val = xp.asarray(val)
    if xp is np:
        np.add.at(out, idx, val.astype(dt, copy=False))
        return out
    at = getattr(xp.add, "at", None)
    if at is None:  # older CuPy: the documented equivalent
        import cupyx  # noqa: PLC0415 - only reached with CuPy already in use
        at = cupyx.scatter_add
    if dt.name in ("float32", "float64", "int32", "uint32", "uint64"):
        at(out, idx, val.astype(dt, copy=False))
    elif dt.name == "int64":
        at(out.view("uint64"), idx, val.astype("int64").view("uint64"))
    else:
        wide = "float32" if dt.kind in "fV" or dt.name == "bfloat16" else "int32"
        work = out.astype(wide)
        at(work, idx, val.astype(wide))
        out[...] = (work != 0) if dt.kind == "b" else work.astype(dt)
    return out
