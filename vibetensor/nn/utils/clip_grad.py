"""Gradient clipping. The total norm stays a tensor (no host sync) unless error_if_nonfinite asks."""
from __future__ import annotations

import math

from ...core import dtype as _dt
from ...core.dispatcher import ops
from ...core.grad_mode import no_grad
from ...core.tensor import Tensor

V = ops.vt


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _vector_norm(g, p):
    if g.dtype.itemsize == 2:  # float16/bfloat16: accumulate in float32 (squares overflow float16 past 256)
        g = g.to(_dt.float32)
    a = V.abs(g)
    if p == math.inf:
        return V.amax(a) if g.numel() else V.sum(a)
    if p == -math.inf:
        return V.amin(a)
    if p == 0:
        return V.sum(V.ne(g, 0)).to(g.dtype)
    if p == 1:
        return V.sum(a)
    if p == 2:
        return V.sqrt(V.sum(a * a))
    return V.pow(V.sum(V.pow(a, p)), 1.0 / p)


@no_grad()
def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The ``norm_type``-norm of all ``tensors`` together (as if concatenated), in their dtype."""
    total, dt = _total_norm(tensors, norm_type, error_if_nonfinite)
    return total.to(dt)


def _total_norm(tensors, norm_type, error_if_nonfinite):
    """(norm accumulated in float32 for half types, the tensors' promoted dtype)."""
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = [t for t in tensors if t is not None]
    norm_type = float(norm_type)
    if not tensors:
        from ...core.factories import tensor
        return tensor(0.0), _dt.get_default_dtype()
    dev = tensors[0].device
    dt = tensors[0].dtype
    for t in tensors[1:]:
        dt = _dt.promote_types(dt, t.dtype)
    acc = _dt.float32 if dt.itemsize == 2 else dt
    norms = [_vector_norm(t, norm_type).to(dev).to(acc) for t in tensors]
    total = _vector_norm(V.stack(norms), norm_type)
    if error_if_nonfinite and not math.isfinite(total.item()):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite "
                           f"({total.item()}), so it cannot be clipped. To disable this error and scale the "
                           f"gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return total, dt


@no_grad()
def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale the gradients by ``min(1, max_norm / (total_norm + 1e-6))`` in place."""
    grads = _grads(parameters)
    if not grads:
        return
    coef = V.clamp(float(max_norm) / (total_norm + 1e-6), None, 1.0)
    for g in grads:
        g.mul_(coef.to(g.device).to(g.dtype))


@no_grad()
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Clip the gradients' total norm to ``max_norm`` in place; returns the total norm (before clipping).
    Half-precision gradients are measured in float32 (their squares would overflow float16)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    else:
        parameters = list(parameters)
    grads = _grads(parameters)
    total, dt = _total_norm(grads, norm_type, error_if_nonfinite)
    if grads:
        clip_grads_with_norm_(parameters, max_norm, total)
    return total.to(dt)


@no_grad()
def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient to [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        g.clamp_(-clip_value, clip_value)


clip_grad_norm = clip_grad_norm_
