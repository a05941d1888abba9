"""Causal attention through cuBLAS in row blocks: the float32 materialized path without the masked half.

Why: with ``is_causal`` the full (T x T) score product computes and stores the upper triangle only for the
softmax to zero it. Split the queries into n row blocks; block (r0, r1) needs keys [0, r1) only, so the
products and the score memory shrink to (n + 1) / 2n of the full ones (n = 4: 62.5%). This is the float32
path at large sizes (float16/bfloat16 take the tensor-core flash kernels): PyTorch's memory-efficient
kernel skips the masked half too. Each block writes its rows of O and dQ in place (``blas.matmul_into``);
dK and dV add up over the blocks in float32, the last block (every key) writing them first.
"""
from __future__ import annotations

import numpy as np

from . import blas
from . import kernels as K

BLOCKS = 4                 # row blocks per causal product
MIN_SCORES = 1 << 22       # score elements per call from which blocks pay (below: one launch each matters more)
_F32 = np.dtype(np.float32)


def row_blocks(q, k, is_causal):
    """[(r0, r1), ...] for a causal float32 self-attention (Tq == Tk) large enough, else None."""
    T = q.shape[-2]
    if not is_causal or q.dtype != _F32 or k.shape[-2] != T or (q.size // q.shape[-1]) * T < MIN_SCORES:
        return None
    n = min(BLOCKS, T // 32)
    if n < 2:
        return None
    return [(i * T // n, (i + 1) * T // n) for i in range(n)]


def forward(q, k, v, scale, blocks):
    """O of causal attention for dense q, k, v (..., T, D)."""
    cp = q.__class__  # a CuPy ndarray class: allocation without the module lookup
    o = cp(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    for r0, r1 in blocks:
        s = blas.matmul(q[..., r0:r1, :], k[..., :r1, :].swapaxes(-1, -2), out_dtype=_F32)
        p = K.softmax_fwd(s, scale, True, r0)
        blas.matmul_into(p, v[..., :r1, :], o[..., r0:r1, :])
    return o


def backward(g, q, k, v, scale, blocks, need_q, need_k, need_v):
    """(dQ, dK, dV) of causal attention (None where not needed); g dense in q's dtype."""
    cp = q.__class__
    dq = cp(q.shape, dtype=q.dtype) if need_q else None
    dk = cp(k.shape, dtype=k.dtype) if need_k else None
    dv = cp(v.shape, dtype=v.dtype) if need_v else None
    for i, (r0, r1) in enumerate(reversed(blocks)):  # the last block reaches every key: it writes dK/dV first
        acc = i > 0
        qi, gi, kk, vv = q[..., r0:r1, :], g[..., r0:r1, :], k[..., :r1, :], v[..., :r1, :]
        p = K.softmax_fwd(blas.matmul(qi, kk.swapaxes(-1, -2), out_dtype=_F32), scale, True, r0)
        if need_v:
            blas.matmul_into(p.swapaxes(-1, -2), gi, dv[..., :r1, :], acc)
        if need_q or need_k:
            ds = K.softmax_bwd(p, blas.matmul(gi, vv.swapaxes(-1, -2), out_dtype=_F32), scale)
            if need_q:
                blas.matmul_into(ds, kk, dq[..., r0:r1, :])
            if need_k:
                blas.matmul_into(ds.swapaxes(-1, -2), qi, dk[..., :r1, :], acc)
    return dq, dk, dv
