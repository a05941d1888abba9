"""embedding (row gather; backward scatter-adds, padding_idx gets no gradient) and dropout."""
from __future__ import annotations

import numpy as np

from ..dispatcher import defop
from ...errors import DTypeError, ShapeError
from ._util import V, xp_of
from .nn_common import positional, scatter_add_rows, up


def _check_ids(opname, ids, n):
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"{opname}: indices must be an integer tensor (int64 or int32), got {ids.dtype}; "
                         f"convert them with .long()")
    from .. import backend as _be
    _be.check_index_range(opname, ids, 0, n, lambda bad: (
        f"{opname}: index {bad} is out of range for a weight with {n} rows (valid 0..{n - 1})"))


def _pad_idx(padding_idx, n):
    if padding_idx is None:
        return None
    if not -n <= padding_idx < n:
        raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings {n} "
                         f"(-{n}..{n - 1})")
    return padding_idx % n


@positional
@defop("embedding", save=(0,))
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``input`` of any shape."""
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: max_norm, scale_grad_by_freq and sparse gradients are not supported")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-d (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.shape)}")
    _check_ids("embedding", input, weight.shape[0])
    _pad_idx(padding_idx, weight.shape[0])
    return xp_of(weight).take(weight, input, axis=0)


@embedding.def_backward
def _(ctx, g):
    ids, w = ctx.args[0], ctx.args[1]
    return None, V.embedding_backward(g, ids, w.shape[0], ctx.args[2])


@defop("embedding_backward")
def embedding_backward(g, ids, num_weights, padding_idx=None):
    """grad_weight: ``g`` rows scatter-added at ``ids`` (float32 accumulation for half types)."""
    xp = xp_of(g)
    d = g.shape[-1]
    gf = up(g).reshape(-1, d)
    flat = ids.reshape(-1).astype(np.int64, copy=False)
    pad = _pad_idx(padding_idx, num_weights)
    if xp is np and flat.size > 4 * num_weights:
        # many repeated rows: sort once and sum runs with reduceat (faster than add.at)
        out = np.zeros((num_weights, d), dtype=gf.dtype)
        order = np.argsort(flat, kind="stable")
        sf = flat[order]
        starts = np.flatnonzero(np.r_[True, sf[1:] != sf[:-1]])
        out[sf[starts]] = np.add.reduceat(gf[order], starts, axis=0)
    else:
        out = xp.zeros((num_weights, d), dtype=gf.dtype)
        if flat.size:
            scatter_add_rows(out, flat, gf)
    if pad is not None:
        out[pad] = 0
    return out.astype(g.dtype, copy=False)


# ---------------------------------------------------------------------------------------------- dropout

@defop("dropout", composite=True)
def dropout(input, p=0.5, training=True, inplace=False, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity when not
    training). The mask comes from the device's generator (or ``generator``)."""
    from ..random import gen_for
    from ..tensor import Tensor
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if not input.dtype.is_floating_point:
        raise DTypeError(f"dropout: expected a floating-point input, got {input.dtype.name}")
    dev = input.device
    gen = gen_for(generator, dev)
    if p == 1.0:
        scale = xp_of(input._data).zeros(input.shape, dtype=input.dtype.np)
    else:
        u = gen.random(tuple(input.shape), np.float32)
        scale = ((u >= p) * (1.0 / (1.0 - p))).astype(input.dtype.np)
    mask = Tensor._make(scale, dev)
    if inplace:
        return input.mul_(mask)
    return V.mul(input, mask)
