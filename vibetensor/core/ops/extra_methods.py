"""Tensor methods for the ops of the ``extra_*`` files (``x.diag()``, ``x.clamp_min_(0)``, ``x.type_as(y)``),
installed without touching tensor.py: a method is added only where Tensor has none yet."""
from __future__ import annotations

from ..tensor import Tensor, _make_forward, _make_inplace

_FORWARD = """
broadcast_to diag diag_embed trace repeat_interleave take_along_dim diff clamp_min clamp_max cummax cummin
logcumsumexp aminmax nansum nanmean median bincount xlogy logit erfinv signbit
""".split()
_INPLACE = "clamp_min clamp_max xlogy logit erfinv".split()


def _type_as(self, other):
    """This tensor cast to ``other``'s dtype (and moved to its device, as PyTorch's tensor types include it)."""
    if not isinstance(other, Tensor):
        raise TypeError(f"type_as: expected a tensor, got {type(other).__name__}")
    return self.to(other.device, other.dtype)


for _n in _FORWARD:
    if not hasattr(Tensor, _n):
        setattr(Tensor, _n, _make_forward(_n))
for _n in _INPLACE:
    if not hasattr(Tensor, _n + "_"):
        setattr(Tensor, _n + "_", _make_inplace(_n))
if not hasattr(Tensor, "type_as"):
    Tensor.type_as = _type_as
