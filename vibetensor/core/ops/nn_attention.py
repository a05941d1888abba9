"""scaled_dot_product_attention (the math formulation, as PyTorch's reference backend).

``softmax(q @ k^T * scale + mask) @ v``: a bool mask keeps positions where it is True, a float mask
is added; ``is_causal`` keeps the lower-left triangle (top-left aligned, as PyTorch). Rows with
every position masked give zeros (PyTorch's safe softmax), not nan. Scores and softmax run in
float32 at least. The public op is a composite that draws the dropout mask, then calls
``_scaled_dot_product_attention`` (arrays in, arrays out; a fused kernel can replace it) whose
backward op ``scaled_dot_product_attention_backward`` recomputes the probabilities.
"""
from __future__ import annotations

import math

import numpy as np

from ..dispatcher import defop
from ...errors import DTypeError, ShapeError
from ..backend import matmul as _bmatmul
from ._util import V, broadcast_shapes, xp_of
from .nn_common import needs, pack, positional, require_float, same_dtype, sum_to_arr, up


def _check(q, k, v, mask, is_causal, enable_gqa):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ShapeError(f"scaled_dot_product_attention: query, key and value need at least 2 dims (..., L, E), "
                         f"got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    same_dtype("scaled_dot_product_attention", q, k, v)
    require_float("scaled_dot_product_attention", q, "query")
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"scaled_dot_product_attention: query and key embedding dims differ: shapes "
                         f"{tuple(q.shape)} and {tuple(k.shape)} ({q.shape[-1]} vs {k.shape[-1]})")
    if k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: key and value sequence lengths differ: shapes "
                         f"{tuple(k.shape)} and {tuple(v.shape)} ({k.shape[-2]} vs {v.shape[-2]})")
    if is_causal and mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    if enable_gqa:
        if q.ndim < 3 or k.ndim < 3 or k.shape[-3] != v.shape[-3] or k.shape[-3] == 0 \
                or q.shape[-3] % k.shape[-3]:
            raise ShapeError(f"scaled_dot_product_attention: enable_gqa needs query heads divisible by key/value "
                             f"heads (dim -3), got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if mask is not None:
        if mask.dtype != np.bool_ and mask.dtype.kind not in "fV":
            raise DTypeError(f"scaled_dot_product_attention: attn_mask must be bool (True = attend) or float "
                             f"(added to the scores), got {mask.dtype}")
        L, S = q.shape[-2], k.shape[-2]
        try:
            broadcast_shapes("scaled_dot_product_attention", mask.shape, tuple(q.shape[:-2]) + (L, S))
        except ShapeError:
            raise ShapeError(f"scaled_dot_product_attention: attn_mask shape {tuple(mask.shape)} does not "
                             f"broadcast to the scores' shape {tuple(q.shape[:-2]) + (L, S)}") from None


def _expand_kv(k, v, q, enable_gqa):
    xp = xp_of(k)
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        return xp.repeat(k, rep, axis=-3), xp.repeat(v, rep, axis=-3), rep
    return k, v, 1


def _probs(qf, kf, mask, is_causal, sc):
    """Attention probabilities (float32 at least) with safe softmax."""
    xp = xp_of(qf)
    s = _bmatmul(qf, xp.swapaxes(kf, -1, -2)) * sc
    L, S = s.shape[-2], s.shape[-1]
    if is_causal:
        s = xp.where(xp.tril(xp.ones((L, S), dtype=bool)), s, -xp.inf)
    elif mask is not None:
        s = xp.where(mask, s, -xp.inf) if mask.dtype == np.bool_ else s + up(mask)
    if s.size == 0:
        return s
    m = s.max(axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    e = xp.exp(s - m)
    tot = e.sum(axis=-1, keepdims=True)
    return e / xp.where(tot == 0, 1, tot)


def _scale(q, scale):
    return scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0


@positional
@defop("_scaled_dot_product_attention", save=(0, 1, 2, 3, 4))
def _sdpa(q, k, v, attn_mask=None, dropout_mask=None, is_causal=False, scale=None, enable_gqa=False):
    """Attention over arrays; ``dropout_mask`` (already scaled by 1/(1-p)) multiplies the probabilities."""
    _check(q, k, v, attn_mask, is_causal, enable_gqa)
    k2, v2, _ = _expand_kv(k, v, q, enable_gqa)
    p = _probs(up(q), up(k2), attn_mask, is_causal, _scale(q, scale))
    if dropout_mask is not None:
        p = p * dropout_mask
    return _bmatmul(p, up(v2)).astype(q.dtype, copy=False)


@_sdpa.def_backward
def _(ctx, g):
    a = ctx.args
    nq, nk, nv, nm = needs(ctx, 0, 1, 2, 3)
    # a fused (flash) forward may have kept its row log-sum-exp (ctx.kept) and saved its output: then the
    # backward need not run the forward again
    from ..tensor import Tensor
    lse = None if ctx.kept is None or ctx.out is None else Tensor._make(ctx.kept, ctx.out._device)
    grads = V.scaled_dot_product_attention_backward(g, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                                                    nq, nk, nv, nm, ctx.out, lse)
    return pack(ctx, dict(zip((0, 1, 2, 3), grads)))


@defop("scaled_dot_product_attention_backward")
def sdpa_backward(g, q, k, v, attn_mask=None, dropout_mask=None, is_causal=False, scale=None, enable_gqa=False,
                  need_q=True, need_k=True, need_v=True, need_mask=False, out=None, lse=None):
    """(grad_q, grad_k, grad_v, grad_attn_mask) of attention; recomputes the probabilities (``out`` and
    ``lse``, the forward's output and row log-sum-exp, serve the fused flash backward only)."""
    xp = xp_of(q)
    sc = _scale(q, scale)
    k2, v2, rep = _expand_kv(k, v, q, enable_gqa)
    qf, kf, vf, gf = up(q), up(k2), up(v2), up(g)
    p = _probs(qf, kf, attn_mask, is_causal, sc)
    pd = p * dropout_mask if dropout_mask is not None else p
    gq = gk = gv = gm = None

    def fold(x, like):  # grads of repeated (GQA) heads sum back into their key/value head
        if rep > 1:
            x = sum_to_arr(x, like.shape[:-3] + (like.shape[-3] * rep,) + like.shape[-2:])
            x = x.reshape(x.shape[:-3] + (like.shape[-3], rep) + x.shape[-2:]).sum(axis=-3)
        return sum_to_arr(x, like.shape).astype(like.dtype, copy=False)

    if need_v:
        gv = fold(_bmatmul(xp.swapaxes(pd, -1, -2), gf), v)
    if need_q or need_k or need_mask:
        dp = _bmatmul(gf, xp.swapaxes(vf, -1, -2))
        if dropout_mask is not None:
            dp = dp * dropout_mask
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
        if need_mask and attn_mask is not None and attn_mask.dtype != np.bool_:
            gm = sum_to_arr(ds, attn_mask.shape).astype(attn_mask.dtype, copy=False)
        ds = ds * sc
        if need_q:
            gq = sum_to_arr(_bmatmul(ds, kf), q.shape).astype(q.dtype, copy=False)
        if need_k:
            gk = fold(_bmatmul(xp.swapaxes(ds, -1, -2), qf), k)
    return gq, gk, gv, gm


@defop("scaled_dot_product_attention", composite=True)
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, generator=None):
    """PyTorch's F.scaled_dot_product_attention (math backend semantics)."""
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1], got {dropout_p}")
    drop = None
    if dropout_p > 0.0:
        from ..random import gen_for
        from ..tensor import Tensor
        kb = tuple(key.shape[:-2])
        if enable_gqa and query.ndim >= 3 and key.ndim >= 3:  # key heads repeat up to the query heads
            kb = kb[:-1] + (query.shape[-3],)
        lead = broadcast_shapes("scaled_dot_product_attention", tuple(query.shape[:-2]), kb)
        shape = tuple(lead) + (query.shape[-2], key.shape[-2])
        if dropout_p == 1.0:
            arr = xp_of(query._data).zeros(shape, dtype=np.float32)
        else:
            u = gen_for(generator, query.device).random(shape, np.float32)
            arr = ((u >= dropout_p) * (1.0 / (1.0 - dropout_p))).astype(np.float32)
        drop = Tensor._make(arr, query.device)
    return V._scaled_dot_product_attention(query, key, value, attn_mask, drop, is_causal, scale, enable_gqa)
