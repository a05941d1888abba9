"""nn.init: in-place initialisers (PyTorch's formulas), drawn from the tensor's device generator."""
from __future__ import annotations

import math

from ..core.grad_mode import no_grad
from ..core.random import gen_for
from ..core.tensor import Tensor


def _check(tensor, name):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{name}: expected a Tensor, got {type(tensor).__name__}")


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d")
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; use one of linear, conv1d/2d/3d, "
                     f"sigmoid, tanh, relu, leaky_relu, selu")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.dim() < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
                         f"(shape {tuple(tensor.shape)})")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} is not supported; use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    _check(tensor, "uniform_")
    with no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    _check(tensor, "normal_")
    with no_grad():
        return tensor.normal_(mean, std, generator=generator)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal(mean, std) restricted to [a, b], by redrawing the values that fall outside."""
    _check(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    if (mean < a - 2 * std) or (mean > b + 2 * std):
        raise ValueError(f"trunc_normal_: mean {mean} is more than 2 std from [a, b] = [{a}, {b}]; the "
                         f"distribution of values may be incorrect")
    g = gen_for(generator, tensor.device)
    import numpy as np
    arr = g.normal(tuple(tensor.shape), np.float64, mean, std)
    bad = (arr < a) | (arr > b)
    for _ in range(1000):
        n = int(bad.sum())
        if n == 0:
            break
        arr[bad] = g.normal((n,), np.float64, mean, std)
        bad = (arr < a) | (arr > b)
    else:  # astronomically unlikely for the ranges allowed above
        arr = arr.clip(a, b)
    with no_grad():
        tensor._data[...] = arr.astype(tensor.dtype.np)
        tensor._vc.v += 1
    return tensor


def constant_(tensor, val):
    _check(tensor, "constant_")
    with no_grad():
        return tensor.fill_(val)


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    _check(tensor, "zeros_")
    with no_grad():
        return tensor.zero_()


def eye_(tensor):
    _check(tensor, "eye_")
    if tensor.dim() != 2:
        raise ValueError(f"eye_: only 2-d tensors are supported, got shape {tuple(tensor.shape)}")
    from ..core.factories import eye
    with no_grad():
        return tensor.copy_(eye(tensor.shape[0], tensor.shape[1], dtype=tensor.dtype, device=tensor.device))


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix (QR of a Gaussian, signs fixed as PyTorch), scaled by ``gain``;
    tensors with more than 2 dims are flattened after dim 0."""
    _check(tensor, "orthogonal_")
    if tensor.dim() < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, got shape "
                         f"{tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    import numpy as np
    from ..core.backend import xp_of
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    g = gen_for(generator, tensor.device)
    flat = g.normal((rows, cols), np.float64)
    if rows < cols:
        flat = flat.T
    xp = xp_of(flat)
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diagonal(r))
    if rows < cols:
        q = q.T
    with no_grad():
        tensor._data[...] = (q * gain).reshape(tuple(tensor.shape)).astype(tensor.dtype.np)
        tensor._vc.v += 1
    return tensor


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if tensor.numel() == 0:
        return tensor  # PyTorch warns and leaves an empty tensor alone
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if tensor.numel() == 0:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


# PyTorch's deprecated spellings
uniform = uniform_
normal = normal_
constant = constant_
orthogonal = orthogonal_
xavier_uniform = xavier_uniform_
xavier_normal = xavier_normal_
kaiming_uniform = kaiming_uniform_
kaiming_normal = kaiming_normal_
