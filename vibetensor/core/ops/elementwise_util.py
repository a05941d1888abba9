"""Helpers shared by the elementwise op files: low-precision compute, broadcast errors, gradient
reduction to an input's shape and dtype."""
from __future__ import annotations

import functools

import numpy as np

from .. import backend as _be
from ._util import broadcast_shapes, cast_grad, sum_to
from ...errors import DTypeError

_F32 = np.dtype(np.float32)


def is_half(dt) -> bool:
    """float16 or bfloat16 (ml_dtypes' bfloat16 has kind 'V')."""
    return dt.itemsize == 2 and dt.kind in "fV"


def shape_of(x):
    return getattr(x, "shape", ())


def bcast_error(name, *xs):
    """Raise the ShapeError naming the shapes when numpy/CuPy refused to broadcast."""
    broadcast_shapes(name, *[tuple(shape_of(x)) for x in xs])


def f32(fn=None, *, quiet=True):
    """Kernel decorator: float16/bfloat16 arrays are computed in float32 and the result cast back
    (PyTorch does the same: numpy's half math is slow and ml_dtypes' bfloat16 lacks most ufuncs).
    ``quiet``: silence numpy's floating-point warnings (PyTorch returns inf/nan silently); kernels that
    cannot produce them pass ``quiet=False`` and skip the errstate cost."""
    if fn is None:
        return lambda f: f32(f, quiet=quiet)
    name = fn.__name__

    @functools.wraps(fn)
    def k(*args, **kwargs):
        half = None
        for x in args:
            dt = getattr(x, "dtype", None)
            if dt is not None and dt.itemsize == 2 and dt.kind in "fV":
                half = dt
                break
        # CuPy never warns: numpy's errstate (a context object per call) only guards numpy kernels
        silence = quiet and not (args and _be.is_cuda_array(args[0]))
        try:
            if half is None:
                if not silence:
                    return fn(*args, **kwargs)
                with np.errstate(all="ignore"):
                    return fn(*args, **kwargs)
            conv = [x.astype(_F32) if hasattr(x, "astype") and is_half(x.dtype) else x for x in args]
            if silence:
                with np.errstate(all="ignore"):
                    out = fn(*conv, **kwargs)
            else:
                out = fn(*conv, **kwargs)
        except ValueError as e:
            if "broadcast" in str(e):
                bcast_error(name.strip("_"), *[a for a in args if hasattr(a, "shape")])
            raise
        if isinstance(out, tuple):
            return tuple(o.astype(half) if o.dtype == _F32 else o for o in out)
        return out.astype(half) if out.dtype == _F32 else out
    return k


def red(g, meta):
    """Gradient ``g`` reduced to an input's shape (broadcasting) and cast to its dtype."""
    return cast_grad(sum_to(g, meta.shape), meta.dtype)


def binary_grads(ctx, *fns):
    """Gradients of an op whose (first len(fns)) inputs may be Python scalars. ``fns[i]`` is called
    lazily, only for a tensor input that needs a gradient, and returns the unreduced gradient."""
    need = iter(ctx.needs_input_grad)
    out = []
    for x, f in zip(ctx.args, fns):
        if hasattr(x, "shape"):
            out.append(red(f(), x) if next(need) else None)
    return tuple(out)


def is_tensor_like(x):
    return hasattr(x, "shape") and hasattr(x, "dtype")


def int_kind(x) -> bool:
    dt = getattr(x, "dtype", None)
    if dt is None:
        return isinstance(x, (int, bool))
    return dt.kind in "biu"


def require_float(name, dt):
    if dt.kind not in "fV":
        raise DTypeError(f"{name}: expected a floating-point tensor, got {dt}; convert it with .float() first")


def check_int_zero_div(name, a, b):
    """Integer division by zero raises on CPU, as in PyTorch (numpy would return 0 with a warning)."""
    if int_kind(a) and int_kind(b):
        xp_np = type(b) is np.ndarray or isinstance(b, (np.generic, int, bool))
        if xp_np and np.any(np.asarray(b) == 0):
            raise ZeroDivisionError(f"{name}: integer division by zero; use floating-point tensors for inf/nan")


def zeros_for(meta):
    """A zero gradient for an input (Tensor or TensorMeta)."""
    from ..factories import zeros
    return zeros(tuple(meta.shape), dtype=meta.dtype, device=meta.device)


def no_bools(name, a, b):
    """Raise for an arithmetic op that PyTorch does not define on bool (both operands bool)."""
    if is_bool(a) and is_bool(b):
        raise DTypeError(f"{name}: not supported for bool tensors; convert them with .int() or .float() first")


def is_bool(x):
    dt = getattr(x, "dtype", None)
    return isinstance(x, bool) if dt is None else dt.kind == "b"
