"""parameters_to_vector / vector_to_parameters."""
from __future__ import annotations

from ...core.dispatcher import ops
from ...core.tensor import Tensor
from ...errors import DeviceMismatchError, ShapeError

V = ops.vt


def _check_device(p, dev):
    if dev is not None and p.device != dev:
        raise DeviceMismatchError(f"parameters are on different devices ({dev} and {p.device}); "
                                  f"move them to one device first")
    return p.device


def parameters_to_vector(parameters):
    """One 1-d tensor holding every parameter, flattened and concatenated."""
    dev, vec = None, []
    for p in parameters:
        dev = _check_device(p, dev)
        vec.append(V.reshape(p, (-1,)))
    return V.cat(vec)


def vector_to_parameters(vec, parameters):
    """Point each parameter's data at its slice of ``vec`` (as PyTorch does: the parameters alias ``vec``)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected vec to be a Tensor, got {type(vec).__name__}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.dim() != 1 or vec.numel() != total:
        raise ShapeError(f"vector_to_parameters: vec has shape {tuple(vec.shape)} but the parameters hold "
                         f"{total} elements; expected shape ({total},)")
    dev, ptr = None, 0
    for p in params:
        dev = _check_device(p, dev)
        n = p.numel()
        p.data = V.reshape(vec[ptr:ptr + n], tuple(p.shape)).data
        ptr += n
