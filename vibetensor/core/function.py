"""``vt.autograd.Function``: user-defined ops with forward/backward, and ``gradcheck``."""
from __future__ import annotations

import numpy as np

from . import dispatcher as _disp
from .autograd import Ctx, Node, TensorMeta, _edge
from .grad_mode import no_grad, is_grad_enabled
from ..errors import AutogradError


class _FnOp:
    """Adapter so a Function subclass looks like an OpDef to the engine."""

    def __init__(self, cls):
        self.cls = cls
        self.name = cls.__name__
        self.qualname = cls.__name__

    def backward_fn(self, ctx, *grads):
        out = self.cls.backward(ctx, *grads)
        out = out if isinstance(out, tuple) else (out,)
        # one gradient per forward argument: keep those of tensor arguments
        return tuple(g for g, is_t in zip(out, ctx._is_tensor_arg) if is_t)


class Function:
    """Subclass with ``@staticmethod forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``;
    call ``MyFn.apply(*args)``. ``backward`` returns one gradient per ``forward`` argument (None for
    non-tensors)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("Function subclasses must implement forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("Function subclasses must implement backward(ctx, ...)")

    @classmethod
    def apply(cls, *args, **kwargs):
        T = _disp._Tensor
        ctx = Ctx()
        ctx.op_name = cls.__name__
        ctx._saved = ()
        ctx._versions = []
        ctx.out = None
        ctx.args = args
        ctx.kwargs = kwargs
        tensors = [a for a in args if isinstance(a, T)]
        ctx._is_tensor_arg = [isinstance(a, T) for a in args]
        ctx.needs_input_grad = tuple(isinstance(a, T) and a.requires_grad for a in args)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        if not (is_grad_enabled() and any(t.requires_grad for t in tensors)):
            return out
        outs = out if isinstance(out, tuple) else (out,)
        node = Node(_FnOp(cls), ctx, [_edge(t) for t in tensors], len(outs))
        ctx.out_metas = [TensorMeta(o) if isinstance(o, T) else None for o in outs]
        res = []
        for i, o in enumerate(outs):
            if isinstance(o, T) and o._dtype.is_floating_point:
                if o.grad_fn is not None or any(o is t for t in tensors):
                    o = o.detach()
                o.requires_grad = True
                o.grad_fn = node
                o._output_nr = i
            res.append(o)
        return tuple(res) if isinstance(out, tuple) else res[0]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Compare autograd's gradients of ``fn`` with central finite differences (inputs in float64)."""
    from . import factories
    T = _disp._Tensor
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff_idx = [i for i, x in enumerate(inputs) if isinstance(x, T) and x.requires_grad]
    if not diff_idx:
        raise ValueError("gradcheck: no input requires grad")

    def f_np(vals):
        args = list(inputs)
        for i, v in zip(diff_idx, vals):
            args[i] = factories.tensor(v, dtype=inputs[i].dtype, device=inputs[i].device)
        with no_grad():
            out = fn(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().numpy().astype(np.float64) for o in outs if isinstance(o, T)]

    base = [inputs[i].detach().numpy().astype(np.float64) for i in diff_idx]
    out0 = f_np(base)
    for oi, o in enumerate(out0):
        for k in range(o.size):
            args = list(inputs)
            out = fn(*args)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            y = outs[oi]
            g = np.zeros(o.shape)
            g.reshape(-1)[k] = 1.0
            from .autograd import grad as _grad
            ana = _grad(y, [inputs[i] for i in diff_idx],
                        grad_outputs=factories.tensor(g, dtype=y.dtype, device=y.device), allow_unused=True)
            for j, i in enumerate(diff_idx):
                x = base[j]
                num = np.zeros(x.size)
                for m in range(x.size):
                    xp, xm = [b.copy() for b in base], [b.copy() for b in base]
                    xp[j].reshape(-1)[m] += eps
                    xm[j].reshape(-1)[m] -= eps
                    num[m] = (f_np(xp)[oi].reshape(-1)[k] - f_np(xm)[oi].reshape(-1)[k]) / (2 * eps)
                a = np.zeros(x.size) if ana[j] is None else ana[j].numpy().astype(np.float64).reshape(-1)
                if not np.allclose(a, num, atol=atol, rtol=rtol):
                    if raise_exception:
                        raise AutogradError(f"gradcheck: Jacobian mismatch for output {oi} element {k} w.r.t. "
                                            f"input {i}:\nnumerical {num}\nanalytical {a}")
                    return False
    return True
