"""nn.functional: PyTorch's functional API over vt ops (``vibetensor.core.dispatcher.ops.vt.<name>``).

Each function normalises PyTorch's arguments and calls the op of the same name; the ops carry the
kernels and backward formulas. Tensors are passed positionally (the dispatcher finds tensors there).
Functions without an op of their own (the piecewise activations, normalize, cosine_similarity, pad, the
smaller losses) are composed here from other vt ops, so autograd derives their backward.
"""
from __future__ import annotations

from ..core.dispatcher import ops
from ..errors import ShapeError

V = ops.vt

_REDUCTIONS = ("none", "mean", "sum")


def _reduction(name, reduction, size_average=None, reduce=None):
    if size_average is not None or reduce is not None:
        raise NotImplementedError(f"{name}: size_average/reduce are deprecated in PyTorch and not supported; "
                                  f"use reduction='mean'|'sum'|'none'")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _pair(x, name):
    if isinstance(x, int):
        return (x, x)
    x = tuple(int(v) for v in x)
    if len(x) == 1:
        return (x[0], x[0])
    if len(x) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {x}")
    return x


# ---------------------------------------------------------------------------------------------------- linear
def linear(input, weight, bias=None):
    """``input @ weight.T + bias``."""
    return V.linear(input, weight, bias)


def bilinear(*args, **kwargs):
    raise NotImplementedError("nn.functional.bilinear is not supported")


# ---------------------------------------------------------------------------------------------------- activations
def relu(input, inplace=False):
    return input.relu_() if inplace else V.relu(input)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def _outside_grad_free(input, keep, value):
    """``input`` where ``keep``, else ``value`` computed from the detached input: PyTorch's piecewise
    activations pass no gradient at their boundaries, where clamp (and so a plain composition) passes it."""
    return V.where(keep, input, value(input.detach()))


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    # gradient strictly inside (min_val, max_val), and at NaN, as PyTorch's hardtanh_backward
    keep = ~((input <= min_val) | (input >= max_val))
    out = _outside_grad_free(input, keep, lambda x: V.clamp(x, min_val, max_val))
    return input.copy_(out) if inplace else out


def threshold(input, threshold, value, inplace=False):
    """``value`` where ``input <= threshold``, else ``input`` (NaN passes through, as PyTorch)."""
    out = V.where(input <= threshold, value, input)
    return input.copy_(out) if inplace else out


def hardsigmoid(input, inplace=False):
    # gradient 1/6 strictly inside (-3, 3), 0 at the boundaries and at NaN, as PyTorch
    x = _outside_grad_free(input, (input > -3.0) & (input < 3.0), lambda d: d)
    out = V.clamp(x + 3.0, 0.0, 6.0) / 6.0
    return input.copy_(out) if inplace else out


def hardswish(input, inplace=False):
    # PyTorch's gradient: 0 for x <= -3, x/3 + 1/2 inside, 1 for x >= 3 (clamp alone gives -1/2 and 3/2 at +-3)
    x = _outside_grad_free(input, (input > -3.0) & (input < 3.0), lambda d: d)
    out = input * V.clamp(x + 3.0, 0.0, 6.0) / 6.0
    return input.copy_(out) if inplace else out


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return V.gelu(input) if approximate == "none" else V.gelu(input, approximate=approximate)


def silu(input, inplace=False):
    out = V.silu(input)
    return input.copy_(out) if inplace else out


def softplus(input, beta=1.0, threshold=20.0):
    if beta == 1.0 and threshold == 20.0:
        return V.softplus(input)
    return V.softplus(input, beta=beta, threshold=threshold)


def sigmoid(input):
    return V.sigmoid(input)


def tanh(input):
    return V.tanh(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    out = V.where(input > 0, input, input * negative_slope)  # x == 0 takes the slope, as PyTorch
    return input.copy_(out) if inplace else out


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):
    out = V.where(input > 0, input * _SELU_SCALE, V.expm1(input) * (_SELU_ALPHA * _SELU_SCALE))
    return input.copy_(out) if inplace else out


def celu(input, alpha=1.0, inplace=False):
    if alpha == 0:
        raise ValueError("celu: alpha cannot be 0 (the negative side is alpha * (exp(x / alpha) - 1))")
    out = V.where(input > 0, input, V.expm1(input * (1.0 / alpha)) * alpha)
    return input.copy_(out) if inplace else out


def logsigmoid(input):
    # min(x, 0) - log1p(exp(-|x|)): no overflow for large |x|; the gradient at 0 is 1/2 (minimum's tie rule)
    return V.minimum(input, 0) - V.log1p(V.exp(-V.abs(input)))


def softsign(input):
    return input / (V.abs(input) + 1)


def glu(input, dim=-1):
    """``a * sigmoid(b)`` with ``a``, ``b`` the two halves of ``input`` along ``dim``."""
    if input.ndim == 0:
        raise ShapeError("glu: does not support 0-d tensors (the halved dimension must be even)")
    if not -input.ndim <= dim < input.ndim:
        raise IndexError(f"glu: dim {dim} is out of range for a {input.ndim}-d input")
    n = input.shape[dim]
    if n % 2:
        raise ShapeError(f"glu: halving dimension must be even, but dimension {dim} of shape "
                         f"{tuple(input.shape)} is size {n}")
    return V.narrow(input, dim, 0, n // 2) * V.sigmoid(V.narrow(input, dim, n // 2, n // 2))


def _softmax_dim(name, input, dim):
    if dim is None:
        # PyTorch's legacy implicit choice (with a deprecation warning there): 0 for 0-, 1-, 3-d, else 1
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    dim = _softmax_dim("softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    return V.softmax(input, dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    dim = _softmax_dim("log_softmax", input, dim)
    if dtype is not None:
        input = input.to(dtype)
    return V.log_softmax(input, dim)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    return softmax(-input, dim, dtype=dtype)


# ---------------------------------------------------------------------------------------------------- normalisation
def _norm_shape(normalized_shape):
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(s) for s in normalized_shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    ns = _norm_shape(normalized_shape)
    if tuple(input.shape[input.ndim - len(ns):]) != ns or len(ns) > input.ndim:
        raise ShapeError(f"layer_norm: normalized_shape {ns} does not match the trailing dims of the input's "
                         f"shape {tuple(input.shape)}")
    return V.layer_norm(input, ns, weight, bias, eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    ns = _norm_shape(normalized_shape)
    if tuple(input.shape[input.ndim - len(ns):]) != ns or len(ns) > input.ndim:
        raise ShapeError(f"rms_norm: normalized_shape {ns} does not match the trailing dims of the input's "
                         f"shape {tuple(input.shape)}")
    return V.rms_norm(input, ns, weight, eps)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """``input / max(||input||_p over dim, eps)``."""
    if out is not None:
        raise NotImplementedError("normalize(out=...) is not supported; assign the result instead")
    n = V.norm(input, p, dim, True)
    return input / V.clamp(n, eps)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """``sum(x1/|x1| * x2/|x2|)`` over ``dim`` of the broadcast shape, each norm clamped below at ``eps``."""
    from ..core.dtype import result_type
    from ..core.ops._util import broadcast_shapes
    dt = result_type(x1, x2)
    if not dt.is_floating_point:
        raise TypeError(f"cosine_similarity: expected floating-point inputs, got {x1.dtype.name} and "
                        f"{x2.dtype.name}; convert them with .float()")
    shape = broadcast_shapes("cosine_similarity", x1.shape, x2.shape)
    x1, x2 = V.expand(x1.to(dt), shape), V.expand(x2.to(dt), shape)  # the norms are over the broadcast dim
    return V.sum((x1 / _clamped_norm(x1, dim, eps)) * (x2 / _clamped_norm(x2, dim, eps)), dim)


def _clamped_norm(x, dim, eps):
    # PyTorch clamps the norm under no_grad: the value is max(norm, eps), the gradient that of the norm
    n = V.norm(x, 2, dim, True)
    nd = n.detach()
    return n - nd + V.clamp(nd, eps)


# ---------------------------------------------------------------------------------------------------- embedding, dropout
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse are not supported")
    if input.dtype.is_floating_point:
        raise TypeError(f"embedding: indices must be an integer tensor, got {input.dtype.name}; use .long()")
    if padding_idx is not None:
        n = weight.shape[0]
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings ({n})")
        padding_idx %= n
    return V.embedding(input, weight, padding_idx)


def dropout(input, p=0.5, training=True, inplace=False):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    out = V.dropout(input, p, True)
    return input.copy_(out) if inplace else out


# ---------------------------------------------------------------------------------------------------- losses
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    reduction = _reduction("cross_entropy", reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return V.cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    reduction = _reduction("nll_loss", reduction, size_average, reduce)
    return V.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _reduction("mse_loss", reduction, size_average, reduce)
    if weight is not None:
        raise NotImplementedError("mse_loss(weight=...) is not supported")
    from ..core.ops.nn_loss import _warn_broadcast
    _warn_broadcast("mse_loss", input, target)
    return V.mse_loss(input, target, reduction=reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction("l1_loss", reduction, size_average, reduce)
    from ..core.ops.nn_loss import _warn_broadcast
    _warn_broadcast("l1_loss", input, target)
    return _reduce(V.abs(input - target), reduction)


def _reduce(loss, reduction):
    return loss if reduction == "none" else (V.sum(loss) if reduction == "sum" else V.mean(loss))


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    reduction = _reduction("smooth_l1_loss", reduction, size_average, reduce)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    from ..core.ops.nn_loss import _warn_broadcast
    _warn_broadcast("smooth_l1_loss", input, target)
    d = V.abs(input - target)
    if beta == 0:  # l1 (PyTorch too): the quadratic branch would divide by 0 and its gradient be NaN
        return _reduce(d, reduction)
    return _reduce(V.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    reduction = _reduction("huber_loss", reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    if weight is not None and tuple(weight.shape) != tuple(input.shape):
        raise ShapeError(f"huber_loss: weight shape {tuple(weight.shape)} must be the input's {tuple(input.shape)}")
    from ..core.ops.nn_loss import _warn_broadcast
    _warn_broadcast("huber_loss", input, target)
    d = V.abs(input - target)
    loss = V.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _reduce(loss if weight is None else loss * weight, reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Pointwise ``target * (log(target) - input)`` (``input`` holds log-probabilities); 'batchmean' divides
    the sum by the batch size, 'mean' by the element count (with PyTorch's warning)."""
    if reduction not in _REDUCTIONS + ("batchmean",):
        raise ValueError(f"kl_div: reduction must be one of {_REDUCTIONS + ('batchmean',)}, got {reduction!r}")
    _reduction("kl_div", "sum" if reduction == "batchmean" else reduction, size_average, reduce)
    if reduction == "mean":
        import warnings
        warnings.warn("kl_div: reduction='mean' divides the total loss by both the batch size and the support "
                      "size; 'batchmean' divides only by the batch size and matches the KL divergence's "
                      "definition", UserWarning, stacklevel=2)
    if log_target:
        loss = V.exp(target) * (target - input)
    else:  # xlogy(t, t): 0 where t == 0; the gradient there is NaN for target (as PyTorch), 0 for input
        loss = V.where(target == 0, 0.0, target * V.log(target)) - target * input
    if reduction == "batchmean":
        out = V.sum(loss)
        return out / input.shape[0] if input.ndim else out
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------------------------------------- attention
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    if enable_gqa:
        raise NotImplementedError("scaled_dot_product_attention(enable_gqa=True) is not supported; repeat the "
                                  "key/value heads to match the query heads instead")
    if attn_mask is not None and is_causal:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    return V.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale)


# ---------------------------------------------------------------------------------------------------- conv / pool
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d: padding must be 'valid', 'same', an int or a pair, got {padding!r}")
    else:
        padding = _pair(padding, "conv2d padding")
    return V.conv2d(input, weight, bias, _pair(stride, "conv2d stride"), padding,
                    _pair(dilation, "conv2d dilation"), groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    if return_indices:
        raise NotImplementedError("max_pool2d(return_indices=True) is not supported")
    ks = _pair(kernel_size, "max_pool2d kernel_size")
    st = ks if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _pair(stride, "stride")
    return V.max_pool2d(input, ks, st, _pair(padding, "padding"), _pair(dilation, "dilation"), ceil_mode)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    ks = _pair(kernel_size, "avg_pool2d kernel_size")
    st = ks if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _pair(stride, "stride")
    return V.avg_pool2d(input, ks, st, _pair(padding, "padding"), ceil_mode, count_include_pad, divisor_override)


# ---------------------------------------------------------------------------------------------------- misc
def one_hot(tensor, num_classes=-1):
    if tensor.dtype.is_floating_point:
        raise TypeError(f"one_hot: expected an integer tensor of class indices, got {tensor.dtype.name}")
    return V.one_hot(tensor, num_classes)


def pad(input, pad, mode="constant", value=None):
    """Constant padding: ``pad`` lists (left, right) pairs starting from the last dim."""
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported (only 'constant')")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: padding length {len(pad)} must be even and at most 2 * ndim "
                         f"({2 * input.ndim}) for an input of shape {tuple(input.shape)}")
    value = 0.0 if value is None else value
    out = input
    for i in range(len(pad) // 2):
        dim = input.ndim - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        if lo < 0:  # negative padding crops
            out = V.narrow(out, dim, -lo, out.shape[dim] + lo)
            lo = 0
        if hi < 0:
            out = V.narrow(out, dim, 0, out.shape[dim] + hi)
            hi = 0
        parts = []
        if lo:
            s = list(out.shape)
            s[dim] = lo
            parts.append(_filled(out, s, value))
        parts.append(out)
        if hi:
            s = list(out.shape)
            s[dim] = hi
            parts.append(_filled(out, s, value))
        if len(parts) > 1:
            out = V.cat(parts, dim)
    return out


def _filled(like, shape, value):
    from ..core.factories import full
    return full(tuple(shape), value, dtype=like.dtype, device=like.device)


from ._functional_extra import (  # noqa: E402,F401  (re-exported)
    adaptive_avg_pool2d, batch_norm, binary_cross_entropy, binary_cross_entropy_with_logits, elu, group_norm, mish,
)

__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "ops", "Tensor", "ShapeError", "V")]
