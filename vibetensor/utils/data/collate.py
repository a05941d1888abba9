"""default_collate: turn a list of samples into a batch (PyTorch's rules, element type of ``batch[0]`` decides)."""
from __future__ import annotations

import numbers

import numpy as np

from ...core.tensor import Tensor
from ...errors import ShapeError


def _check_same_shape(batch):
    # Checked here, not left to stack, so numpy batches get the same clear error as tensor batches.
    s0 = tuple(batch[0].shape)
    for i, b in enumerate(batch):
        if tuple(b.shape) != s0:
            raise ShapeError(f"default_collate: each element in the batch must have the same shape, got {s0} "
                             f"at entry 0 and {tuple(b.shape)} at entry {i}; pad or crop the samples, or pass "
                             f"collate_fn=")


def default_collate(batch):
    """Stack tensors, numpy arrays and numbers along a new first dimension; recurse into dicts, namedtuples,
    tuples and lists; leave strings as a list. Python ints infer the dtype from the whole batch like
    ``vt.tensor`` (``[1, 2.5]`` -> float32), Python floats give float64, numpy scalars keep their dtype."""
    from ...core import factories as F
    from ...core.dispatcher import ops
    e = batch[0]
    if isinstance(e, Tensor):
        _check_same_shape(batch)
        return ops.vt.stack(list(batch), 0)
    if isinstance(e, np.ndarray):
        if e.dtype.kind in "OSUaV":
            raise TypeError(f"default_collate: numpy arrays of dtype {e.dtype} can't become a tensor; "
                            f"pass collate_fn=")
        _check_same_shape(batch)
        return F.from_numpy(np.stack(batch))
    if isinstance(e, (np.bool_, np.number)):
        if all(isinstance(b, np.generic) and b.dtype == e.dtype for b in batch):
            return F.from_numpy(np.array(batch, dtype=e.dtype))
        return F.tensor(list(batch))
    if isinstance(e, float):
        return F.tensor(list(batch), dtype="float64")
    if isinstance(e, int):  # bool included; the dtype comes from the whole batch, so a later float isn't truncated
        return F.tensor(list(batch))
    if isinstance(e, numbers.Real):  # Fraction, Decimal, ...: beyond PyTorch, harmless
        return F.tensor([float(b) for b in batch], dtype="float64")
    if isinstance(e, (str, bytes)):
        return list(batch)
    if isinstance(e, dict):
        return {k: default_collate([b[k] for b in batch]) for k in e}
    if isinstance(e, tuple) and hasattr(e, "_fields"):
        return type(e)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(e, (tuple, list)):
        lens = {len(b) for b in batch}
        if len(lens) != 1:
            raise ValueError(f"default_collate: samples have different lengths {sorted(lens)}")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise TypeError(f"default_collate: don't know how to batch {type(e).__name__}; pass collate_fn=")
