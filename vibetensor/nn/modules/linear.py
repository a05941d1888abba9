"""Identity, Linear, Flatten, Unflatten."""
from __future__ import annotations

import math

from ...core import factories as _f
from ...core.dispatcher import ops
from ...core.size_args import _short_repr, _size_int
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

V = ops.vt


def _factory(device, dtype):
    return {"device": device, "dtype": dtype}


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


def _features(name, n):
    """A layer width: an int >= 0 (int() would take 2.5 or '4', as PyTorch does not)."""
    k = _size_int(n)
    if k is None:
        raise TypeError(f"Linear: {name} must be an int, got {_short_repr(n)} ({type(n).__name__})")
    n = k
    if n < 0:
        raise ValueError(f"Linear: {name} must be >= 0, got {n}")
    return n


class Linear(Module):
    """``y = x @ W.T + b``; W is (out_features, in_features), initialised as PyTorch does."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features = _features("in_features", in_features)
        self.out_features = _features("out_features", out_features)
        self.weight = Parameter(_f.empty((out_features, in_features), **_factory(device, dtype)))
        if bias:
            self.bias = Parameter(_f.empty((out_features,), **_factory(device, dtype)))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return V.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input):
        return V.unflatten(input, self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
