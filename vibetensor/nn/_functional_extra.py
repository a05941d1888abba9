"""More of nn.functional, composed from vt ops (autograd flows through them): binary cross-entropy,
ELU/Mish/Hardswish/Hardsigmoid, batch_norm, group_norm, adaptive_avg_pool2d."""
from __future__ import annotations

import math

from ..core.dispatcher import ops
from ..core.grad_mode import no_grad
from ..errors import ShapeError

V = ops.vt


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    from .functional import _reduction
    reduction = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    return V.binary_cross_entropy(input, target, weight, None, None, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    from .functional import _reduction
    reduction = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    return V.binary_cross_entropy_with_logits(input, target, weight, None, None, reduction, pos_weight)


def elu(input, alpha=1.0, inplace=False):
    out = V.where(input > 0, input, V.expm1(input) * alpha)
    return input.copy_(out) if inplace else out


def mish(input, inplace=False):
    out = input * V.tanh(V.softplus(input))
    return input.copy_(out) if inplace else out


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Normalise over every dim but the channel dim 1. In training, batch statistics are used and the
    running ones (if given) move by ``momentum`` (running_var takes the unbiased batch variance)."""
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input with at least 2 dims (N, C, ...), got shape "
                         f"{tuple(input.shape)}")
    dims = (0,) + tuple(range(2, input.ndim))
    shape = _channel_shape(input)
    if training:
        n = input.numel() // input.shape[1]
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input "
                             f"shape {tuple(input.shape)}")
        mean = V.mean(input, dims)
        var = V.var(input, dims, correction=0)
        if running_mean is not None or running_var is not None:
            with no_grad():
                if running_mean is not None:
                    running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
                if running_var is not None:
                    unbiased = var.detach().to(running_var.dtype) * (n / (n - 1))
                    running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        mean, var = running_mean, running_var
    out = (input - V.reshape(mean, shape)) * V.rsqrt(V.reshape(var, shape) + eps)
    if weight is not None:
        out = out * V.reshape(weight, shape)
    if bias is not None:
        out = out + V.reshape(bias, shape)
    return out


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise ShapeError(f"group_norm: the channel dim of input shape {tuple(input.shape)} must be divisible by "
                         f"num_groups ({num_groups})")
    N = input.shape[0]
    x = V.reshape(input, (N, num_groups, -1))
    mean = V.mean(x, -1, True)
    var = V.var(x, -1, keepdim=True, correction=0)
    out = V.reshape((x - mean) * V.rsqrt(var + eps), tuple(input.shape))
    shape = _channel_shape(input)
    if weight is not None:
        out = out * V.reshape(weight, shape)
    if bias is not None:
        out = out + V.reshape(bias, shape)
    return out


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows [floor(i*H/oh), ceil((i+1)*H/oh)); one avg_pool2d when the
    sizes divide evenly."""
    if input.ndim not in (3, 4):
        raise ShapeError(f"adaptive_avg_pool2d: expected a 3-d or 4-d input, got shape {tuple(input.shape)}")
    H, W = input.shape[-2], input.shape[-1]
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    oh = H if oh is None else oh
    ow = W if ow is None else ow
    if oh == 1 and ow == 1:
        return V.mean(input, (-2, -1), True)
    if H % oh == 0 and W % ow == 0:
        from .functional import avg_pool2d
        k = (H // oh, W // ow)
        return avg_pool2d(input, k, k)
    rows = []
    for i in range(oh):
        h0, h1 = (i * H) // oh, math.ceil((i + 1) * H / oh)
        cols = []
        for j in range(ow):
            w0, w1 = (j * W) // ow, math.ceil((j + 1) * W / ow)
            cols.append(V.mean(input[..., h0:h1, w0:w1], (-2, -1)))
        rows.append(V.stack(cols, -1))
    return V.stack(rows, -2)
