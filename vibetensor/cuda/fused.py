"""Register the fused CUDA kernels as the CUDA kernels of their vt ops.

Each wrapper takes exactly the generic kernel's arguments; when the case is one the fused kernel
covers (last-dim softmax, 1-d normalized shape, class-index cross-entropy, causal/unmasked
attention, float16/float32) it runs the fused path, otherwise it calls the generic kernel, which
works on CuPy arrays too. ``FUSED_CALLS`` counts hits per op (tests assert the fused path ran).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .. import _env
from ..core import dispatcher as _disp
from ..core.dispatcher import Key
from . import blas, causal_blocks
from . import kernels as K

FUSED_CALLS: Counter = Counter()
_registered = False


def _generic(name):
    return _disp.REGISTRY[f"vt::{name}"].kernels[Key.CPU]


def _ok(*arrs):
    return K.supported(*[a for a in arrs if a is not None])


def _f32(w):
    return None if w is None else w.astype(np.float32, copy=False)


def _last(dim, ndim):
    return dim is not None and ndim >= 1 and dim % ndim == ndim - 1


def softmax(input, dim=None, dtype=None):
    if dtype is None and input.size and _last(dim, input.ndim) and _ok(input):
        FUSED_CALLS["softmax"] += 1
        return K.softmax_fwd(input)
    return _generic("softmax")(input, dim, dtype)


def softmax_backward(g, y, dim, input_dtype=None):
    if y.size and _last(dim, y.ndim) and _ok(y) and (input_dtype is None or input_dtype.np == y.dtype):
        FUSED_CALLS["softmax_backward"] += 1
        return K.softmax_bwd(y, g)
    return _generic("softmax_backward")(g, y, dim, input_dtype)


def _one_dim(ns):
    return isinstance(ns, int) or len(ns) == 1


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    if input.size and _one_dim(normalized_shape) and _ok(input) and input.shape[-1] == (
            normalized_shape if isinstance(normalized_shape, int) else normalized_shape[0]):
        FUSED_CALLS["layer_norm"] += 1
        y, stats = K.layer_norm_fwd(input, _f32(weight), _f32(bias), eps)
        return _disp.Keep(y, extra=stats)  # under autograd the backward reuses the row means and rstds
    return _generic("layer_norm")(input, normalized_shape, weight, bias, eps)


def layer_norm_backward(g, x, normalized_shape, weight=None, has_bias=False, eps=1e-5, need_x=True,
                        need_w=True, need_b=True, stats=None):
    if x.size and _one_dim(normalized_shape) and _ok(x):
        FUSED_CALLS["layer_norm_backward"] += 1
        dx, dw, db = K.layer_norm_bwd(g, x, _f32(weight), eps, need_w and weight is not None,
                                      need_b and has_bias, stats)
        wdt = weight.dtype if weight is not None else x.dtype
        return (dx if need_x else None,
                dw.astype(wdt, copy=False) if (need_w and weight is not None) else None,
                db.astype(wdt, copy=False) if (need_b and has_bias) else None)
    return _generic("layer_norm_backward")(g, x, normalized_shape, weight, has_bias, eps, need_x, need_w, need_b,
                                           stats)


def _rms_eps(x, eps):
    return eps if eps is not None else float(np.finfo(np.float32).eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    if input.size and _one_dim(normalized_shape) and _ok(input):
        FUSED_CALLS["rms_norm"] += 1
        return K.rms_norm_fwd(input, _f32(weight), _rms_eps(input, eps))[0]
    return _generic("rms_norm")(input, normalized_shape, weight, eps)


def rms_norm_backward(g, x, normalized_shape, weight=None, eps=None, need_x=True, need_w=True):
    if x.size and _one_dim(normalized_shape) and _ok(x):
        FUSED_CALLS["rms_norm_backward"] += 1
        dx, dw = K.rms_norm_bwd(g, x, _f32(weight), _rms_eps(x, eps), need_w and weight is not None)
        return (dx if need_x else None,
                dw.astype(weight.dtype, copy=False) if (need_w and weight is not None) else None)
    return _generic("rms_norm_backward")(g, x, normalized_shape, weight, eps, need_x, need_w)


def _xent_ok(input, target, weight, size_average, reduce, red):
    return (input.ndim == 2 and target.ndim == 1 and target.dtype.kind in "iu" and weight is None
            and size_average is None and reduce is None and red in ("mean", "sum", "none") and _ok(input)
            and input.shape[0] > 0)


def _bad_target(target, C, ignore_index):
    """The deferred error's message: finds the first offending target (a sync, on the error path only)."""
    t = target.reshape(-1)
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    v = int(t[bad.nonzero()[0][0]].get())
    return (f"cross_entropy: target {v} is out of bounds for {C} classes (valid 0..{C - 1}, or "
            f"ignore_index={ignore_index})")


def _bad_index(ids, n):
    """The deferred error's message for an embedding id out of range (a sync, on the error path only)."""
    t = ids.reshape(-1)
    v = int(t[((t < 0) | (t >= n)).nonzero()[0][0]].get())
    return f"embedding: index {v} is out of range for a weight with {n} rows (valid 0..{n - 1})"


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    # one launch gathers the rows and flags bad ids (raised at the next flush, as every deferred CUDA check)
    if max_norm is None and not (scale_grad_by_freq or sparse) and weight.ndim == 2 and _ok(weight):
        from ..core import backend as _be
        from ..core.ops.nn_embed import _pad_idx
        _pad_idx(padding_idx, weight.shape[0])
        r = K.embedding(input, weight)
        if r is not None:
            FUSED_CALLS["embedding"] += 1
            out, bad = r
            n = weight.shape[0]
            _be.defer_flag(bad, lambda: _bad_index(input, n))
            return out
    return _generic("embedding")(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)


def embedding_backward(g, ids, num_weights, padding_idx=None):
    if g.ndim >= 1 and _ok(g):
        from ..core.ops.nn_embed import _pad_idx
        pad = _pad_idx(padding_idx, num_weights)
        out = K.embedding_bwd(g, ids, num_weights, -1 if pad is None else pad)
        if out is not None:
            FUSED_CALLS["embedding_backward"] += 1
            return out.astype(g.dtype, copy=False)
    return _generic("embedding_backward")(g, ids, num_weights, padding_idx)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    if _xent_ok(input, target, weight, size_average, reduce, reduction) and 0.0 <= label_smoothing <= 1.0:
        from ..core import backend as _be
        FUSED_CALLS["cross_entropy"] += 1
        C = input.shape[1]
        # two launches: the row kernel (loss and log-sum-exp per row), then one block that reduces, counts
        # and range-checks the targets (raised at the next flush, as every deferred CUDA index check)
        loss, stats = K.xent_fwd(input, target, ignore_index, label_smoothing)
        out, bad = K.xent_reduce(loss, target, stats, C, ignore_index, reduction == "mean", input.dtype)
        _be.defer_flag(bad, lambda: _bad_target(target, C, ignore_index))
        if reduction == "none":
            out = loss.astype(input.dtype, copy=False)
        # under autograd the backward reuses the row log-sum-exp and the count (no second pass over the logits)
        return _disp.Keep(out, extra=stats)
    return _generic("cross_entropy")(input, target, weight, size_average, ignore_index, reduce, reduction,
                                     label_smoothing)


def cross_entropy_backward(g, x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                           need_input=True, need_target=False, stats=None):
    if need_input and not need_target and _xent_ok(x, target, weight, None, None, reduction):
        FUSED_CALLS["cross_entropy_backward"] += 1
        mean = reduction == "mean"
        if stats is None or stats.shape != (x.shape[0] + 1,):
            loss, stats = K.xent_fwd(x, target, ignore_index, label_smoothing)
            if mean:
                K.xent_reduce(loss, target, stats, x.shape[1], ignore_index, True)
        else:
            FUSED_CALLS["cross_entropy_backward_kept"] += 1
        return K.xent_bwd(x, target, stats, g, ignore_index, label_smoothing, mean), None
    return _generic("cross_entropy_backward")(g, x, target, weight, ignore_index, reduction, label_smoothing,
                                              need_input, need_target)


def _sdpa_ok(q, k, v, attn_mask, dropout_mask, enable_gqa):
    return (attn_mask is None and dropout_mask is None and not enable_gqa and q.ndim >= 2
            and q.dtype == k.dtype == v.dtype and K.supported(q)
            and q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and q.size and k.size)


def _dense(x):
    """x when cuBLAS takes it as is (one batch stride, unit stride in a matrix dim), else a C-order copy."""
    if blas._mat_layout(x) is not None and blas._batch_stride(x, x.shape[:-2]) is not None:
        return x
    return x.copy()


def _sc(q, scale):
    return scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])


# float16/bfloat16 on sm_80+ run the tensor-core flash kernels (src_flash_tc.cu) and float32 the
# register-tiled ones (src_flash_f32.cu); "auto" takes both at every size. The tiled float32 kernels beat
# the cuBLAS path at every train_gpt shape (benchmarks/attention.py, tenth session, BENCHMARKS.md: medium fwd+bwd
# 0.73 ms against 0.80 for one cuBLAS product and 1.89 in row blocks; gpt2-small 1.41 against 1.92 and
# 2.02); the graph-captured medium step took 33.98 ms with them, 35.75 with cuBLAS in the ninth session
# (another machine). The limits below apply to the one-row-per-thread kernels
# (src_flash.cu: any other float dtype, or float32 with TILED_F32 off), which do the products far slower
# than cuBLAS: up to FLASH_AUTO_MAX_SCORES score elements per call in eager mode (medium's 2^24 stepped in
# 38.3 ms materialized against 46.6 ms flash, sixth session), FLASH_AUTO_MAX_SCORES_GRAPH while a CUDA
# graph is captured (there only device time counts, and cuBLAS won at both sizes measured).
FLASH_AUTO_MAX_SCORES = 1 << 22
FLASH_AUTO_MAX_SCORES_GRAPH = 0


def _flash(q, k, v):
    mode = _env.flags().flash_attention
    if mode == "off" or not K.flash_ok(q, k, v):
        return False
    if mode == "on" or K.tensor_cores(q.dtype) or K.tiled_f32(q.dtype):
        return True
    from .graphs import is_current_stream_capturing
    limit = FLASH_AUTO_MAX_SCORES_GRAPH if is_current_stream_capturing() else FLASH_AUTO_MAX_SCORES
    return (q.size // q.shape[-1]) * k.shape[-2] <= limit


def sdpa(q, k, v, attn_mask=None, dropout_mask=None, is_causal=False, scale=None, enable_gqa=False):
    if _sdpa_ok(q, k, v, attn_mask, dropout_mask, enable_gqa) and _flash(q, k, v):
        FUSED_CALLS["sdpa_flash"] += 1
        o, lse = K.flash_fwd(q, k, v, _sc(q, scale), bool(is_causal))
        return _disp.Keep(o, extra=lse, save_out=True)  # under autograd the backward reuses o and lse
    if _sdpa_ok(q, k, v, attn_mask, dropout_mask, enable_gqa):
        from .blas import matmul
        FUSED_CALLS["sdpa"] += 1
        # q/k/v viewed from one qkv buffer have no single batch stride: cuBLAS needs dense copies, made once
        # here and saved in the views' place, so the backward (five products) copies nothing again
        qc, kc, vc = _dense(q), _dense(k), _dense(v)
        blocks = causal_blocks.row_blocks(q, k, is_causal)
        if blocks is not None:
            FUSED_CALLS["sdpa_causal_blocks"] += 1
            o = causal_blocks.forward(qc, kc, vc, _sc(q, scale), blocks)
        else:
            s = matmul(qc, kc.swapaxes(-1, -2), out_dtype=np.float32)
            p = K.softmax_fwd(s, _sc(q, scale), bool(is_causal), 0, out_dtype=q.dtype)
            o = matmul(p, vc)
        copies = {i: c for i, (c, a) in enumerate(((qc, q), (kc, k), (vc, v))) if c is not a}
        return _disp.Keep(o, copies) if copies else o
    return _generic("_scaled_dot_product_attention")(q, k, v, attn_mask, dropout_mask, is_causal, scale, enable_gqa)


def sdpa_backward(g, q, k, v, attn_mask=None, dropout_mask=None, is_causal=False, scale=None, enable_gqa=False,
                  need_q=True, need_k=True, need_v=True, need_mask=False, out=None, lse=None):
    if _sdpa_ok(q, k, v, attn_mask, dropout_mask, enable_gqa) and not need_mask and _flash(q, k, v):
        FUSED_CALLS["sdpa_flash_backward"] += 1
        if lse is not None and out is not None:
            FUSED_CALLS["sdpa_flash_backward_kept"] += 1
        else:
            out = lse = None
        dq, dk, dv = K.flash_bwd(g, q, k, v, _sc(q, scale), bool(is_causal), out, lse)
        return (dq if need_q else None), (dk if need_k else None), (dv if need_v else None), None
    if _sdpa_ok(q, k, v, attn_mask, dropout_mask, enable_gqa) and not need_mask:
        from .blas import matmul
        FUSED_CALLS["sdpa_backward"] += 1
        sc = _sc(q, scale)
        dt = q.dtype
        g = _dense(g.astype(dt, copy=False))  # once: it takes part in two products
        blocks = causal_blocks.row_blocks(q, k, is_causal)
        if blocks is not None:
            FUSED_CALLS["sdpa_causal_blocks_backward"] += 1
            return causal_blocks.backward(g, _dense(q), _dense(k), _dense(v), sc, blocks, need_q, need_k,
                                          need_v) + (None,)
        # probabilities recomputed in q's dtype (the forward's P), dP in float32, dS back in q's dtype
        p = K.softmax_fwd(matmul(q, k.swapaxes(-1, -2), out_dtype=np.float32), sc, bool(is_causal), 0,
                          out_dtype=dt)
        gv = matmul(p.swapaxes(-1, -2), g) if need_v else None
        gq = gk = None
        if need_q or need_k:
            dp = matmul(g, v.swapaxes(-1, -2), out_dtype=np.float32)
            ds = K.softmax_bwd(p, dp, sc)
            gq = matmul(ds, k) if need_q else None
            gk = matmul(ds.swapaxes(-1, -2), q) if need_k else None
        return gq, gk, gv, None
    return _generic("scaled_dot_product_attention_backward")(g, q, k, v, attn_mask, dropout_mask, is_causal, scale,
                                                             enable_gqa, need_q, need_k, need_v, need_mask)


def gelu(a, approximate="none"):
    if _ok(a) and approximate in ("none", "tanh"):
        FUSED_CALLS["gelu"] += 1
        return K.gelu_fwd(a, approximate)
    return _generic("gelu")(a, approximate)


def gelu_backward(g, a, approximate="none"):
    if _ok(a) and approximate in ("none", "tanh"):
        FUSED_CALLS["gelu_backward"] += 1
        return K.gelu_bwd(a, g, approximate)
    return _generic("gelu_backward")(g, a, approximate)


def linear(input, weight, bias=None):
    """One cuBLASLt GEMM with the bias added in its epilogue; else the GEMM, then the bias added in
    place by one kernel in the output's dtype."""
    if (bias is not None and weight.ndim == 2 and bias.shape == (weight.shape[0],) and _ok(input, weight, bias)
            and input.dtype == weight.dtype == bias.dtype and input.ndim >= 1):
        if input.ndim >= 2 and input._c_contiguous:
            out = blas.linear_bias(input.reshape(-1, input.shape[-1]), weight, bias)
            if out is not None:
                FUSED_CALLS["linear_epilogue"] += 1
                return out.reshape(input.shape[:-1] + (weight.shape[0],))
        out = _generic("linear")(input, weight, None)
        if out._c_contiguous:
            FUSED_CALLS["linear"] += 1
            return K.bias_add_(out, bias)
        return out + bias
    return _generic("linear")(input, weight, bias)


def linear_backward(g, x, w, need_x=True, need_w=True, need_b=True, bias_shape=None, grad_dtypes=None):
    """Weight and bias grads by one cuBLASLt GEMM (the bias grad reduced in its epilogue), else by cuBLAS
    and a column-sum kernel (float32 accumulation); the input grad by cuBLAS. ``grad_dtypes`` (autocast:
    float32 gradients of half operands) are the GEMMs' output types, so nothing is rounded to the half
    type on the way and no cast follows."""
    if not (w.ndim == 2 and g.size and g.ndim >= 1 and _ok(g, x, w) and g.dtype == x.dtype == w.dtype
            and (not need_b or bias_shape == (w.shape[0],))):
        return _generic("linear_backward")(g, x, w, need_x, need_w, need_b, bias_shape, grad_dtypes)
    dx_dt, dw_dt, db_dt = grad_dtypes or (None, None, None)
    g2 = g.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, x.shape[-1])
    gw = gb = None
    if need_w and need_b and g2._c_contiguous:
        r = blas.weight_and_bias_grads(g2, x2, dw_dt)
        if r is not None:
            FUSED_CALLS["linear_backward_epilogue"] += 1
            gw, gb = r
    if need_w and gw is None:
        gw = blas.matmul(g2.T, x2, dw_dt)
    if need_b and gb is None:
        FUSED_CALLS["linear_backward"] += 1
        gb = K.col_sum(g2)  # float32
    if gb is not None:
        want = x.dtype if db_dt is None else db_dt
        if gb.dtype != want:
            gb = gb.astype(want)
    gx = blas.matmul(g2, w, dx_dt).reshape(x.shape) if need_x else None
    return gx, gw, gb


def _binary(name, a, b, op, alpha=1):
    if hasattr(a, "data") and hasattr(b, "data") and type(alpha) is not complex:
        c = K.binary(a, b, op, alpha)
        if c is not None:
            FUSED_CALLS[name] += 1
            return c
    return None


def add(a, b, *, alpha=1):
    c = _binary("add", a, b, 0, alpha)
    return _generic("add")(a, b, alpha=alpha) if c is None else c


def _sub(a, b, *, alpha=1):
    c = _binary("sub", a, b, 0, -alpha)
    return _generic("_sub")(a, b, alpha=alpha) if c is None else c


def mul(a, b):
    c = _binary("mul", a, b, 1)
    return _generic("mul")(a, b) if c is None else c


# A float32 tensor with a float16/bfloat16 one (a residual stream plus an autocast output) by one kernel
# that reads both dtypes, where the dispatcher's general path would launch a cast first (OpDef.mixed_cuda);
# None when the shapes, layouts or dtypes are not that case.
_MIXED = {
    "add": lambda a, b, alpha=1: _binary("add", a, b, 0, alpha),
    "_sub": lambda a, b, alpha=1: _binary("sub", a, b, 0, -alpha),
    "mul": lambda a, b: _binary("mul", a, b, 1),
}


_TABLE = {
    "add": add, "_sub": _sub, "mul": mul,
    "softmax": softmax, "softmax_backward": softmax_backward,
    "layer_norm": layer_norm, "layer_norm_backward": layer_norm_backward,
    "rms_norm": rms_norm, "rms_norm_backward": rms_norm_backward,
    "cross_entropy": cross_entropy, "cross_entropy_backward": cross_entropy_backward,
    "_scaled_dot_product_attention": sdpa, "scaled_dot_product_attention_backward": sdpa_backward,
    "gelu": gelu, "gelu_backward": gelu_backward,
    "linear": linear, "linear_backward": linear_backward,
    "embedding": embedding, "embedding_backward": embedding_backward,
}


def register():
    """Install the fused kernels as CUDA kernels (idempotent; ops that do not exist are skipped)."""
    global _registered
    if _registered:
        return
    for name, fn in _TABLE.items():
        op = _disp.REGISTRY.get(f"vt::{name}")
        if op is not None and op.kernels.get(Key.CUDA) is op.kernels.get(Key.CPU):
            op.kernels[Key.CUDA] = fn
    for name in ("add", "_sub", "mul"):
        op = _disp.REGISTRY.get(f"vt::{name}")
        if op is not None:
            op.mixed_cuda = _MIXED[name]
    _registered = True
