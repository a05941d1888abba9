"""Adam and AdamW (PyTorch's single-tensor update rule, amsgrad and maximize included)."""
from __future__ import annotations

import math

import numpy as np

from ..core import dtype as _dt
from ..core import factories as _f
from ..core.grad_mode import enable_grad, no_grad
from .optimizer import Optimizer, bump_step


def _scalar_dtype():
    # PyTorch keeps `step` as a 0-d float tensor: float64 under a float64 default dtype, else float32
    return _dt.float64 if _dt.get_default_dtype() is _dt.float64 else _dt.float32


NUMPY_PATH = True  # CPU float tensors update through numpy directly (tests turn it off for the reference)
_NP_FLOATS = (_dt.float32, _dt.float64)


def _numpy_ok(p, state, amsgrad):
    g = p.grad
    if not NUMPY_PATH or p._device.type != "cpu" or p._dtype not in _NP_FLOATS or g._dtype is not p._dtype \
            or p._is_sharded or g._is_sharded or type(p._data) is not np.ndarray or not p._data.flags.writeable \
            or g._data.shape != p._data.shape:
        return False
    for k in ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ()):
        t = state.get(k)
        if t is None or t._dtype is not p._dtype or t._data.shape != p._data.shape or t._is_sharded \
                or type(t._data) is not np.ndarray or not t._data.flags.writeable:
            return False
    return True


def _numpy_step(p, state, step, lr, beta1, beta2, eps, wd, decoupled, amsgrad, maximize):
    """The per-tensor update below, op for op in the same order (so bit-identical), as numpy in-place
    ufuncs: ~10 dispatched vt ops per parameter were most of a small model's CPU step."""
    w, m, v = p._data, state["exp_avg"]._data, state["exp_avg_sq"]._data
    g = p.grad._data
    if maximize:
        g = -g
    if wd != 0:
        if decoupled:
            np.multiply(w, 1 - lr * wd, out=w)
        else:
            g = g + wd * w
    np.multiply(m, beta1, out=m)
    m += (1 - beta1) * g
    np.multiply(v, beta2, out=v)
    gg = g * g
    gg *= 1 - beta2
    v += gg
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    if amsgrad:
        mx = state["max_exp_avg_sq"]
        np.maximum(mx._data, v, out=mx._data)
        mx._vc.v += 1
        denom = np.sqrt(mx._data)
    else:
        denom = np.sqrt(v)
    denom /= bc2_sqrt
    denom += eps
    upd = m / denom
    upd *= -step_size
    w += upd
    for t in (p, state["exp_avg"], state["exp_avg_sq"]):
        t._vc.v += 1


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if capturable or differentiable:
            raise NotImplementedError(f"{type(self).__name__}: capturable and differentiable are not supported")
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=False, differentiable=False, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, amsgrad):
        state = self.state[p]
        if len(state) == 0:
            state["step"] = _f.tensor(0.0, dtype=_scalar_dtype())
            state["exp_avg"] = _f.zeros_like(p)
            state["exp_avg_sq"] = _f.zeros_like(p)
            if amsgrad:
                state["max_exp_avg_sq"] = _f.zeros_like(p)
        return state

    def _try_fused(self, gi, group, decoupled):
        """fused=None: the multi-tensor CUDA kernel when the group qualifies; True: it or an error;
        False: never."""
        fused = group.get("fused")
        if fused is False:
            return False
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return True  # nothing to update
        if fused is None and params[0].device.type != "cuda":
            return False
        from ._fused import fused_adamw_step, ineligible_reason
        why = ineligible_reason(group, params, decoupled)
        if why is not None:
            if fused:
                raise ValueError(f"{type(self).__name__}(fused=True) cannot run this param group: {why}; "
                                 f"pass fused=None (automatic) or fused=False")
            return False
        fused_adamw_step(self, gi, group, params)
        return True

    @no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            amsgrad, maximize = group["amsgrad"], group["maximize"]
            decoupled = group.get("decoupled_weight_decay", self._decoupled)
            if self._try_fused(gi, group, decoupled):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._init_state(p, amsgrad)
                step = bump_step(state["step"])
                if _numpy_ok(p, state, amsgrad):
                    _numpy_step(p, state, step, lr, beta1, beta2, eps, wd, decoupled, amsgrad, maximize)
                    continue
                grad = p.grad if not maximize else -p.grad
                if wd != 0:
                    if decoupled:
                        p.mul_(1 - lr * wd)
                    else:
                        grad = grad.add(p, alpha=wd)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).add_(grad * grad, alpha=1 - beta2)
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                step_size = lr / bias_correction1
                bc2_sqrt = math.sqrt(bias_correction2)
                if amsgrad:
                    if "max_exp_avg_sq" not in state:
                        state["max_exp_avg_sq"] = _f.zeros_like(p)
                    mx = state["max_exp_avg_sq"]
                    mx.copy_(mx.maximum(exp_avg_sq))
                    denom = (mx.sqrt() / bc2_sqrt).add_(eps)
                else:
                    denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
                p.add_(exp_avg / denom, alpha=-step_size)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (``p *= 1 - lr * weight_decay`` before the Adam step)."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
