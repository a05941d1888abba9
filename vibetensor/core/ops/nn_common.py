"""Helpers shared by the linalg and nn op files.

* ``positional(op)``: lets an op take its PyTorch positional parameters by keyword too
  (``linear(x, w, bias=b)``). The dispatcher only unwraps and tracks tensors passed positionally,
  so the op's ``__call__`` binds keywords into their positional slots (filling defaults) first;
  kernels, saved-tensor indices and backward formulas then see one fixed argument layout.
* dtype helpers: CPU half/bfloat16 math runs in float32 (numpy has no fast half kernels), and
  softmax / norm / loss statistics always run in at least float32, on every backend.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import dispatcher as _disp
from ..autograd import TensorMeta
from ..dispatcher import OpDef, dispatch
from ...errors import DTypeError
from ._util import wrap_dim, xp_of

_LOW = {np.dtype(np.float16)}
try:
    import ml_dtypes
    _LOW.add(np.dtype(ml_dtypes.bfloat16))
except ImportError:  # pragma: no cover - ml_dtypes is a hard dependency
    pass


def positional(op: OpDef) -> OpDef:
    """Make ``op`` bind its positional-or-keyword parameters (from the kernel's signature)."""
    sig = inspect.signature(op.kernels[next(iter(op.kernels))])
    names, defaults = [], []
    for p in sig.parameters.values():
        if p.kind is not p.POSITIONAL_OR_KEYWORD:
            break
        names.append(p.name)
        defaults.append(p.default)
    index = {n: i for i, n in enumerate(names)}
    nparams = len(names)
    opname = op.name

    def __call__(self, *args, **kwargs):
        if kwargs or len(args) < nparams:
            full = list(args) + [_MISSING] * (nparams - len(args))
            rest = {}
            for k, v in kwargs.items():
                i = index.get(k)
                if i is None:
                    rest[k] = v
                elif i < len(args):
                    raise TypeError(f"{opname}() got multiple values for argument '{k}'")
                else:
                    full[i] = v
            for i, v in enumerate(full):
                if v is _MISSING:
                    d = defaults[i]
                    if d is inspect.Parameter.empty:
                        raise TypeError(f"{opname}() missing required argument '{names[i]}'")
                    full[i] = d
            return dispatch(self, tuple(full), rest)
        return dispatch(self, args, kwargs)

    cls = type(f"PositionalOp_{opname}", (OpDef,), {"__slots__": (), "__call__": __call__})
    op.__class__ = cls
    return op


_MISSING = object()


def is_low(a) -> bool:
    return a.dtype in _LOW


def up_cpu(a):
    """float16/bfloat16 numpy arrays -> float32 (CuPy arrays stay: cuBLAS has fast half GEMMs)."""
    if a is not None and a.dtype in _LOW and xp_of(a) is np:
        return a.astype(np.float32)
    return a


def up(a):
    """float16/bfloat16 -> float32 on every backend (statistics: softmax, norms, losses)."""
    if a is not None and a.dtype in _LOW:
        return a.astype(np.float32)
    return a


def require_float(opname, a, what="input"):
    if a.dtype.kind not in "fV":
        raise DTypeError(f"{opname}: expected a floating-point {what}, got dtype {_dtname(a.dtype)}; "
                         f"convert it with .float()")


def same_dtype(opname, *arrs):
    dts = [a.dtype for a in arrs if a is not None]
    if any(d != dts[0] for d in dts[1:]):
        names = " and ".join(_dtname(d) for d in dts)
        raise DTypeError(f"{opname}: expected all operands to have the same dtype, got {names}; "
                         f"convert them with .to(dtype)")


def _dtname(d):
    return "bfloat16" if str(d) == "bfloat16" else np.dtype(d).name


def sum_to_arr(x, shape):
    """Sum a broadcast array back down to ``shape``."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead:
        x = x.sum(axis=tuple(range(lead)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    if dims:
        x = x.sum(axis=dims, keepdims=True)
    return x


def arg(ctx, i, default=None):
    a = ctx.args
    return a[i] if i < len(a) else default


def _is_tensorish(a):
    return isinstance(a, (_disp._Tensor, TensorMeta))


def needs(ctx, *positions):
    """needs_input_grad for the tensors at these argument positions (False where absent)."""
    flags = iter(ctx.needs_input_grad)
    got = {i: next(flags) for i, a in enumerate(ctx.args) if _is_tensorish(a)}
    return [got.get(p, False) for p in positions]


def pack(ctx, grads: dict):
    """Gradients keyed by argument position -> tuple in the flattened tensor order autograd expects."""
    return tuple(grads.get(i) for i, a in enumerate(ctx.args) if _is_tensorish(a))


def dim_arg(opname, dim, ndim):
    return wrap_dim(opname, dim, ndim)


def scatter_add_rows(out, idx, vals):
    """``out[idx[i]] += vals[i]`` with repeated indices accumulating (numpy / CuPy)."""
    xp = xp_of(out)
    if hasattr(xp.add, "at"):
        xp.add.at(out, idx, vals)
    else:  # older CuPy: ufunc.at is missing, cupyx has the same scatter
        import importlib
        importlib.import_module("cupyx").scatter_add(out, idx, vals)
