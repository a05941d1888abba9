"""Size and shape arguments (``t.view(2, 3)``, ``vt.zeros((2, 3))``): what PyTorch takes as a size
(``__index__``: ints, numpy integers, integer tensors of one element), and the error for anything else."""
from __future__ import annotations

import operator
import sys

import numpy as np

from . import dtype as _dt


def _shape_arg(shape, name=None):
    """Accept t.view(2, 3), t.view((2, 3)) and t.view([2, 3]). ``name``: the op, for errors (default: the
    calling function's name)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if type(s) is not int:
            break
    else:
        return shape  # plain ints (the common case): nothing to convert
    out = []
    for i, s in enumerate(shape):
        n = _size_int(s)
        if n is None:
            raise TypeError(_bad_size_msg(name or sys._getframe(1).f_code.co_name, s, i, shape))
        out.append(n)
    return tuple(out)


def _size_int(s):
    """``s`` as a size, or None: what ``__index__`` takes (numpy integers, 0-d integer arrays, one-element
    integer tensors), as PyTorch; not ``int()``, which truncates 2.5 and parses '12'. Bools are refused,
    as PyTorch refuses them (``zeros(True)`` is a bug more often than a 1)."""
    if isinstance(s, (bool, np.bool_)) or getattr(s, "_dtype", None) is _dt.bool_:
        return None
    try:
        return operator.index(s)
    except TypeError:
        return None


_SIZE_ARG = {"view": "shape", "reshape": "shape", "permute": "dims", "repeat": "repeats", "tile": "dims"}


def _short_repr(x, limit=40):
    r = repr(x)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _bad_size_msg(name, s, i, shape):
    name = name.removeprefix("_tensor_")  # ops/shape.py's Tensor.reshape
    where = f" at position {i} of ({', '.join(_short_repr(x) for x in shape)})" if len(shape) > 1 else ""
    return (f"{name}(): {_SIZE_ARG.get(name, 'size')} must be a tuple of ints, got {_short_repr(s)} "
            f"({type(s).__name__}){where}; pass ints, e.g. {name}(2, 3) (round a computed float first)")
