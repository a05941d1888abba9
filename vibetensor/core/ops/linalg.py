"""Matrix products: matmul (PyTorch 1-d / batch-broadcast rules), mm, bmm, dot, mv, outer, linear,
addmm, baddbmm.

Forward kernels call ``xp.matmul`` (BLAS on CPU, cuBLAS through CuPy on CUDA). CPU float16 /
bfloat16 are computed in float32 and cast back (numpy has no half GEMM). Backward is one op,
``matmul_backward(g, a, b, need_a, need_b)``, that also reduces broadcast batch dims, and
``linear_backward`` for the (..., in) x (out, in) case.
"""
from __future__ import annotations

import numpy as np

from .. import backend as _be
from .. import dispatcher as _disp
from ..dispatcher import CPU_KEY, CUDA_KEY, Keep, defop
from ...errors import DTypeError, ShapeError
from ..backend import matmul as _bmatmul
from ._util import V, broadcast_shapes, xp_of
from .nn_common import positional, same_dtype, sum_to_arr, up_cpu


def _shape_err(opname, a, b, k1, k2):
    return ShapeError(f"{opname}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                      f"(inner dimensions {k1} and {k2} differ)")


def _check_matmul(opname, a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"{opname}: both arguments need at least 1 dimension, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}; use mul for scalars")
    if a.dtype != b.dtype:
        same_dtype(opname, a, b)
    if a.dtype == bool:
        raise DTypeError(f"{opname}: bool tensors are not supported; convert them with .float() or .long()")
    k1 = a.shape[-1]
    k2 = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k1 != k2:
        raise _shape_err(opname, a, b, k1, k2)
    if a.ndim > 2 and b.ndim > 2:
        try:
            broadcast_shapes(opname, a.shape[:-2], b.shape[:-2])
        except ShapeError:
            raise ShapeError(f"{opname}: batch dimensions of shapes {tuple(a.shape)} and {tuple(b.shape)} "
                             f"({tuple(a.shape[:-2])} and {tuple(b.shape[:-2])}) do not broadcast") from None


def _mm(a, b):
    """xp.matmul with CPU half -> float32."""
    a2, b2 = up_cpu(a), up_cpu(b)
    out = _bmatmul(a2, b2)
    return out if a2 is a else out.astype(a.dtype)


def _matmul_grads(g, a, b, need_a, need_b):
    xp = xp_of(g)
    dt = a.dtype
    g, a, b = up_cpu(g), up_cpu(a), up_cpu(b)
    a_ = a[None, :] if a.ndim == 1 else a
    b_ = b[:, None] if b.ndim == 1 else b
    if b.ndim == 1:
        g = g[..., None]
    if a.ndim == 1:
        g = g[..., None, :]
    ga = gb = None
    if need_a:
        if a_.ndim == 2 and g.ndim > 2:  # one GEMM over the flattened batch instead of matmul + sum
            bb = xp.broadcast_to(b_, g.shape[:-2] + b_.shape[-2:])
            ga = _bmatmul(xp.moveaxis(g, -2, 0).reshape(g.shape[-2], -1),
                           xp.moveaxis(bb, -2, 0).reshape(b_.shape[-2], -1).T)
        else:
            ga = sum_to_arr(_bmatmul(g, xp.swapaxes(b_, -1, -2)), a_.shape)
        ga = ga.reshape(a.shape).astype(dt, copy=False)
    if need_b:
        if b_.ndim == 2 and g.ndim > 2:
            ab = xp.broadcast_to(a_, g.shape[:-2] + a_.shape[-2:])
            gb = _bmatmul(ab.reshape(-1, a_.shape[-1]).T, g.reshape(-1, g.shape[-1]))
        else:
            gb = sum_to_arr(_bmatmul(xp.swapaxes(a_, -1, -2), g), b_.shape)
        gb = gb.reshape(b.shape).astype(dt, copy=False)
    return ga, gb


@defop("matmul_backward")
def matmul_backward(g, a, b, need_a=True, need_b=True):
    """(grad_a, grad_b) of ``matmul(a, b)`` for upstream ``g`` (None where not needed)."""
    return _matmul_grads(g, a, b, need_a, need_b)


def _mm_bw(ctx, g):
    a, b = ctx.saved
    na, nb = ctx.needs_input_grad
    return V.matmul_backward(g, a, b, na, nb)


_NP_F = (np.dtype(np.float32), np.dtype(np.float64))


@defop("matmul", save=(0, 1))
def matmul(a, b):
    if type(a) is np.ndarray and a.dtype in _NP_F and b.dtype is a.dtype and type(b) is np.ndarray:
        try:  # the common CPU case: np.matmul's rules are torch.matmul's for one float dtype
            return np.matmul(a, b)
        except ValueError:
            pass  # 0-d operands, mismatched shapes: the checks below say what is wrong
    _check_matmul("matmul", a, b)
    return _mm(a, b)


matmul.def_backward(_mm_bw)


@defop("mm", save=(0, 1))
def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expected two 2-d matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}; "
                         f"use matmul for other ranks")
    _check_matmul("mm", a, b)
    return _mm(a, b)


mm.def_backward(_mm_bw)


@defop("bmm", save=(0, 1))
def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: expected two 3-d tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"bmm: batch sizes differ: shapes {tuple(a.shape)} and {tuple(b.shape)} "
                         f"({a.shape[0]} vs {b.shape[0]}); use matmul to broadcast")
    _check_matmul("bmm", a, b)
    return _mm(a, b)


bmm.def_backward(_mm_bw)


@defop("dot", save=(0, 1))
def dot(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"dot: expected two 1-d tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"dot: inconsistent sizes: shapes {tuple(a.shape)} and {tuple(b.shape)} "
                         f"({a.shape[0]} vs {b.shape[0]} elements)")
    _check_matmul("dot", a, b)
    return _mm(a, b)


dot.def_backward(_mm_bw)


@defop("mv", save=(0, 1))
def mv(a, b):
    if a.ndim != 2 or b.ndim != 1:
        raise ShapeError(f"mv: expected a 2-d matrix and a 1-d vector, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    _check_matmul("mv", a, b)
    return _mm(a, b)


mv.def_backward(_mm_bw)


@defop("outer", save=(0, 1))
def outer(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"outer: expected two 1-d tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    same_dtype("outer", a, b)
    return a[:, None] * b[None, :]


@outer.def_backward
def _(ctx, g):
    a, b = ctx.saved
    na, nb = ctx.needs_input_grad
    return V.outer_backward(g, a, b, na, nb)


@defop("outer_backward")
def outer_backward(g, a, b, need_a=True, need_b=True):
    ga, gb = _matmul_grads(g, a[:, None], b[None, :], need_a, need_b)
    return (None if ga is None else ga.reshape(a.shape)), (None if gb is None else gb.reshape(b.shape))


# ---------------------------------------------------------------------------------------------- linear

def _check_linear(x, w, b):
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        same_dtype("linear", x, w, b)
    if w.ndim not in (1, 2):
        raise ShapeError(f"linear: weight must be 1-d or 2-d (out_features, in_features), got shape "
                         f"{tuple(w.shape)}")
    if x.ndim == 0:
        raise ShapeError("linear: input must have at least 1 dimension, got a 0-d tensor")
    kin = w.shape[-1]
    if x.shape[-1] != kin:
        raise ShapeError(f"linear: input shape {tuple(x.shape)} and weight shape {tuple(w.shape)} cannot be "
                         f"multiplied (input features {x.shape[-1]} vs weight in_features {kin})")
    if b is not None and not (w.ndim == 2 and b.shape == (w.shape[0],)):  # the usual bias needs no more checks
        out_f = w.shape[0] if w.ndim == 2 else ()
        try:
            broadcast_shapes("linear", tuple(x.shape[:-1]) + ((out_f,) if w.ndim == 2 else ()), b.shape)
        except ShapeError:
            raise ShapeError(f"linear: bias shape {tuple(b.shape)} does not match out_features {out_f} "
                             f"(weight shape {tuple(w.shape)})") from None


@positional
@defop("linear", save=(0, 1))
def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` with weight (out_features, in_features)."""
    x, w, b = input, weight, bias
    _check_linear(x, w, b)
    x2, w2 = up_cpu(x), up_cpu(w)
    if w.ndim == 1:
        out = _bmatmul(x2, w2)
    else:
        lead = x.shape[:-1]
        out = _bmatmul(x2.reshape(-1, x.shape[-1]), w2.T).reshape(lead + (w.shape[0],))
    if b is not None:
        out = out + up_cpu(b)
    return out if x2 is x else out.astype(x.dtype)


@linear.def_backward
def _(ctx, g):
    x, w = ctx.saved
    b = ctx.args[2]
    need = ctx.needs_input_grad
    gx, gw, gb = V.linear_backward(g, x, w, need[0], need[1], b is not None and need[2],
                                   None if b is None else tuple(b.shape))
    return (gx, gw) if b is None else (gx, gw, gb)


@defop("linear_backward")
def linear_backward(g, x, w, need_x=True, need_w=True, need_b=True, bias_shape=None, grad_dtypes=None):
    """(grad_input, grad_weight, grad_bias) of ``linear``, in x's dtype or in ``grad_dtypes`` (three numpy
    dtypes: autocast's float32 gradients of low-precision products, written without rounding to the
    low dtype first)."""
    dts = grad_dtypes or (x.dtype,) * 3
    g2, x2, w2 = up_cpu(g), up_cpu(x), up_cpu(w)
    gx = gw = gb = None
    if w.ndim == 1:
        gx, gw = _matmul_grads(g2, x2, w2, need_x, need_w)
        if need_b:
            gb = sum_to_arr(g2, bias_shape)
    else:
        gf = g2.reshape(-1, w.shape[0])
        if need_x:
            gx = _bmatmul(gf, w2).reshape(x.shape)
        if need_w:
            gw = _bmatmul(gf.T, x2.reshape(-1, x.shape[-1]))
        if need_b:
            gb = sum_to_arr(g2, bias_shape)
    return tuple(None if t is None else t.astype(d, copy=False) for t, d in zip((gx, gw, gb), dts))


# ------------------------------------------------------------------------------------ autocast linear

@defop("linear_autocast", save=(0, 1))
def linear_autocast(input, weight, bias, dtype):
    """``linear`` computed in ``dtype`` (float16/bfloat16) from float32 or ``dtype`` operands: what autocast
    runs for ``linear``. The casts happen inside this one op (PyTorch records a cast node per operand:
    here that would be three more dispatched ops and three more backward nodes per layer). Under autograd
    the low-precision copies are saved in place of the float32 operands (``Keep``), as PyTorch's cast
    nodes save their outputs: backward casts nothing again, and a float32 input no step needs is freed.
    The output is in ``dtype``."""
    np_dt = dtype.np
    ops = [input, weight] if bias is None else [input, weight, bias]
    todo = [i for i, a in enumerate(ops) if a.dtype != np_dt]
    if todo:  # one launch for all the casts on CUDA
        for i, c in zip(todo, _be.astype_many([ops[i] for i in todo], np_dt)):
            ops[i] = c
    out = _LINEAR.kernels[CUDA_KEY if _be.is_cuda_array(ops[0]) else CPU_KEY](ops[0], ops[1],
                                                                              None if bias is None else ops[2])
    if not todo or todo[0] > 1:
        return out
    # the copies stand in for the operands in ctx.args too: their own dtypes go along for the gradients
    return Keep(out, {i: ops[i] for i in todo if i < 2}, (input.dtype, weight.dtype))


_LINEAR = _disp.REGISTRY["vt::linear"]
_LINEAR_BWD = _disp.REGISTRY["vt::linear_backward"]


@linear_autocast.def_backward
def _(ctx, g):
    # on arrays, as the forward: the GEMMs and the casts back are this node's work alone
    x, w = ctx.saved  # in ``dtype``: the forward's copies, or the operands if they were in it already
    args = ctx.args
    b, dtype = args[2], args[3]
    need = ctx.needs_input_grad
    np_dt, dev = dtype.np, x._device
    astype, T = _be.astype, _disp._Tensor
    with _be.device_guard(dev):
        xa = x._data if x._dtype is dtype else astype(x._data, np_dt)
        wa = w._data if w._dtype is dtype else astype(w._data, np_dt)
        ga = g._data if g._dtype is dtype else astype(g._data, np_dt)
        # each gradient in its input's dtype, float32 ones straight from the GEMMs' float32 accumulators
        kept = ctx.kept or (args[0].dtype.np, args[1].dtype.np)
        dts = (kept[0], kept[1], np_dt if b is None else b.dtype.np)
        grads = _LINEAR_BWD.kernels[CUDA_KEY if dev.type == "cuda" else CPU_KEY](
            ga, xa, wa, need[0], need[1], b is not None and need[2], None if b is None else tuple(b.shape), dts)
        out = []
        for arr, d in zip(grads, dts if b is not None else dts[:2]):
            if arr is not None and arr.dtype != d:
                arr = astype(arr, d)
            out.append(None if arr is None else T._make(arr, dev))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- addmm

def _addmm_kernel(opname, input, m1, m2, beta, alpha):
    prod = _mm(m1, m2)
    if beta == 0:  # PyTorch ignores input (even nan/inf) when beta is 0
        out = prod if alpha == 1 else prod * alpha
        broadcast_shapes(opname, input.shape, out.shape)
        return out
    broadcast_shapes(opname, input.shape, prod.shape)
    out = prod if alpha == 1 else prod * alpha
    return out + (input if beta == 1 else input * beta)


@positional
@defop("addmm", save=(1, 2))
def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)``."""
    if mat1.ndim != 2 or mat2.ndim != 2:
        raise ShapeError(f"addmm: mat1 and mat2 must be 2-d, got shapes {tuple(mat1.shape)} and "
                         f"{tuple(mat2.shape)}")
    _check_matmul("addmm", mat1, mat2)
    same_dtype("addmm", input, mat1)
    return _addmm_kernel("addmm", input, mat1, mat2, beta, alpha)


@positional
@defop("baddbmm", save=(1, 2))
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * (batch1 @ batch2)`` for 3-d batches."""
    if batch1.ndim != 3 or batch2.ndim != 3 or batch1.shape[0] != batch2.shape[0]:
        raise ShapeError(f"baddbmm: batch1 and batch2 must be 3-d with the same batch size, got shapes "
                         f"{tuple(batch1.shape)} and {tuple(batch2.shape)}")
    _check_matmul("baddbmm", batch1, batch2)
    same_dtype("baddbmm", input, batch1)
    return _addmm_kernel("baddbmm", input, batch1, batch2, beta, alpha)


def _addmm_bw(ctx, g):
    m1, m2 = ctx.saved
    inp = ctx.args[0]
    beta = ctx.kwargs.get("beta", 1)
    alpha = ctx.kwargs.get("alpha", 1)
    ni, n1, n2 = ctx.needs_input_grad
    gi = None
    if ni:
        from ._util import sum_to
        gi = sum_to(g if beta == 1 else g * beta, inp.shape)
    g1, g2 = V.matmul_backward(g if alpha == 1 else g * alpha, m1, m2, n1, n2)
    return gi, g1, g2


addmm.def_backward(_addmm_bw)
baddbmm.def_backward(_addmm_bw)
