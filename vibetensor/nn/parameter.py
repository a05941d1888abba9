"""nn.Parameter: a leaf tensor that a Module registers as a learnable weight.

A real ``Tensor`` subclass for plain tensors. For tensor subclasses (sharded DTensors) the object
itself is tagged ``_is_param`` instead, and ``isinstance(x, Parameter)`` still answers True through
the metaclass (as PyTorch does for custom tensors).
"""
from __future__ import annotations

from ..core.tensor import Tensor


class _ParameterMeta(type):
    def __instancecheck__(cls, inst):
        if cls is Parameter and isinstance(inst, Tensor) and getattr(inst, "_is_param", False):
            return True
        return super().__instancecheck__(inst)


class Parameter(Tensor, metaclass=_ParameterMeta):
    """``nn.Parameter(data, requires_grad=True)``: shares ``data``'s memory (no copy)."""

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from ..core.factories import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(data): data must be a vibetensor Tensor, got {type(data).__name__}; "
                            f"wrap it with vt.tensor(...) first")
        if requires_grad and not data.dtype.is_floating_point:
            raise TypeError(f"Parameter: only floating-point tensors can require gradients, got {data.dtype.name}; "
                            f"pass requires_grad=False or convert with .float()")
        if type(data) is not Tensor and not isinstance(data, Parameter) and type(data) is not cls:
            # a tensor subclass (e.g. a sharded DTensor): tag it rather than rewrap it
            t = data.detach() if data.grad_fn is not None else data
            t._is_param = True
            t.requires_grad = bool(requires_grad)
            return t
        p = cls._make(data._data, data._device)
        p._vc = data._vc
        p.requires_grad = bool(requires_grad)
        return p

    def __init__(self, *args, **kwargs):  # Tensor.__init__ refuses direct construction
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(self.detach().clone(), self.requires_grad)
        if self.grad is not None:
            p.grad = self.grad.clone()
        memo[id(self)] = p
        return p


def is_parameter(x) -> bool:
    return isinstance(x, Parameter)
