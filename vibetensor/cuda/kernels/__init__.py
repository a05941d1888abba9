"""Fused CUDA kernels (compiled by CuPy/NVRTC on first use, cached per device).

Array-level functions on CuPy arrays; ``vibetensor.cuda.fused`` registers them as the CUDA kernels
of the matching vt ops. Each replaces several CuPy launches with one (row-wise kernels: one block
per row, float32 accumulation). Outputs are C-contiguous ``cp.ndarray(shape, dtype)``: CuPy's
``empty``/``empty_like`` wrappers cost a few microseconds more per call on the host.
"""
from __future__ import annotations

import os

import numpy as np

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

from ...core import backend as _be

_DIR = os.path.dirname(__file__)
_SRC = "".join(open(os.path.join(_DIR, f)).read() for f in ("src_rows.cu", "src_pointwise.cu"))
_TYPES = {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16"}  # float64: exact reference path
_NAMES = []
for _t in _TYPES.values():
    _NAMES += [f"ln_fwd<{_t}>", f"ln_bwd_dx<{_t}>", f"ln_bwd_dwb<{_t}>", f"rms_fwd<{_t}>", f"rms_bwd_dx<{_t}>",
               f"softmax_fwd<{_t}, {_t}>", f"softmax_bwd<{_t}, {_t}, {_t}>", f"xent_fwd<{_t}>",
               f"xent_reduce<{_t}>", f"xent_bwd<{_t}>",
               f"gelu_fwd<{_t}>", f"gelu_bwd<{_t}>", f"bias_add<{_t}>", f"col_sum<{_t}>"]
for _t in ("__half", "__nv_bfloat16"):  # attention: float32 scores -> half probabilities, float32 dP
    _NAMES += [f"softmax_fwd<float, {_t}>", f"softmax_bwd<{_t}, float, {_t}>"]
_WARP_VPT = (2, 8, 32)  # warp-per-row softmax for rows up to 64 / 256 / 1024 elements
for _v in _WARP_VPT:
    for _t in _TYPES.values():
        _NAMES += [f"softmax_fwd_warp<{_t}, {_t}, {_v}>", f"softmax_bwd_warp<{_t}, {_t}, {_t}, {_v}>"]
    for _t in ("__half", "__nv_bfloat16"):
        _NAMES += [f"softmax_fwd_warp<float, {_t}, {_v}>", f"softmax_bwd_warp<{_t}, float, {_t}, {_v}>"]
_LN_VPT = (4, 8, 16, 32)  # warp-per-row layer norm for rows up to 128 / 256 / 512 / 1024 elements
for _v in _LN_VPT:
    for _t in _TYPES.values():
        _NAMES += [f"ln_fwd_warp<{_t}, {_v}>", f"ln_bwd_dx_warp<{_t}, {_v}>"]
for _t in ("__half", "__nv_bfloat16"):
    _NAMES += [f"cast4<float, {_t}>", f"cast4<{_t}, float>", f"cast4x3<float, {_t}>"]
for _t in _TYPES.values():
    _NAMES += [f"gelu_fwd4<{_t}>", f"gelu_bwd4<{_t}>", f"binary4<{_t}, {_t}, {_t}>"]
for _t in ("__half", "__nv_bfloat16"):  # float32 with a 2-byte float, either order
    _NAMES += [f"binary4<float, {_t}, float>", f"binary4<{_t}, float, float>"]
_CAT_UNITS = ((16, "uint4"), (8, "uint2"), (4, "unsigned int"), (2, "unsigned short"), (1, "unsigned char"))
_NAMES += [f"cat4<{u}>" for _, u in _CAT_UNITS]
_ID_CTYPE = {np.dtype(np.int64): "long long", np.dtype(np.int32): "int"}  # embedding indices
for _i in _ID_CTYPE.values():
    _NAMES += [f"embed_rows<{u}, {_i}>" for _, u in _CAT_UNITS]
    _NAMES += [f"embed_bwd<{_t}, {_i}>" for _t in _TYPES.values()]
_modules: dict = {}
_functions: dict = {}  # (device, name, dtypes) -> compiled function
# numpy dtype -> C type, keyed by dtype objects: str(dtype) costs microseconds per call on the hot path
_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_BF16 = np.dtype(ml_dtypes.bfloat16) if ml_dtypes is not None else None
_CTYPE = {_F32: "float", _F16: "__half"}
if _BF16 is not None:
    _CTYPE[_BF16] = "__nv_bfloat16"


def _mod():
    cp = _be.cupy_module()
    dev = cp.cuda.runtime.getDevice()
    m = _modules.get(dev)
    if m is None:
        m = cp.RawModule(code=_SRC, options=("--std=c++14",),
                         name_expressions=_NAMES + ["adamw_multi", "adamw_step_inc", "partial_sum"])
        _modules[dev] = m
    return m


def _fn(name, *dtypes):
    cp = _be.cupy_module()
    key = (cp.cuda.runtime.getDevice(), name) + dtypes
    f = _functions.get(key)
    if f is None:
        ts = [_CTYPE.get(d) for d in dtypes]
        if None in ts:
            raise TypeError(f"fused CUDA kernel {name}: dtypes {[str(d) for d in dtypes]} not supported "
                            f"(float16/bfloat16/float32)")
        f = _functions[key] = _mod().get_function(f"{name}<{', '.join(ts)}>")
    return f


def supported(*arrays) -> bool:
    for a in arrays:
        if a.dtype not in _CTYPE:
            return False
    return True


def _threads(n):
    return int(min(1024, max(32, 1 << (int(n) - 1).bit_length() if n > 1 else 32)))


def _c(x):
    """x in C order; a contiguous x is returned as is (CuPy's ascontiguousarray costs ~10 us even then)."""
    return x if x._c_contiguous else _be.cupy_module().ascontiguousarray(x)


def _ptr(a):
    return 0 if a is None else a


# ---------------------------------------------------------------- layer norm / rms norm
def layer_norm_fwd(x, w, b, eps):
    """x: (..., N) contiguous; w, b: float32 (N,) or None -> (y, stats): stats float32 (2 * M,), the M row
    means then the M rstds, which ``layer_norm_bwd`` can reuse."""
    cp = _be.cupy_module()
    N = x.shape[-1]
    M = x.size // max(N, 1)
    x = _c(x)
    y = cp.ndarray(x.shape, x.dtype)
    stats = cp.ndarray((2 * M,), dtype=cp.float32)
    if M:
        v = _ln_vpt(N)
        if v:
            _fn_vpt("ln_fwd_warp", (x.dtype,), v)(((M + 3) // 4,), (128,), (
                x, _ptr(w), _ptr(b), y, stats, M, cp.int32(N), cp.float32(eps)))
        else:
            _fn("ln_fwd", x.dtype)((M,), (_threads(min(N, 1024)),),
                                   (x, _ptr(w), _ptr(b), y, stats, N, cp.float32(eps)))
    return y, stats


def _ln_vpt(N):
    """Elements per lane of the warp-per-row layer-norm kernels for rows of N, or 0 (block per row)."""
    for v in _LN_VPT:
        if N <= 32 * v:
            return v
    return 0


def _col_partials(name, dy, x, stats, ln, with_b):
    """(dw, db or None) of layer norm (``ln``: ``stats`` holds the row means, then the rstds; rms norm: the
    rstds): per-block column partials of both in one buffer, then one launch summing both (two views of one
    output)."""
    cp = _be.cupy_module()
    N = x.shape[-1]
    M = x.size // max(N, 1)
    G = int(min(256, max(1, M // 32)))  # enough blocks to fill the GPU at hidden sizes of a few hundred
    parts = 2 if with_b else 1
    pw = cp.ndarray((parts * G, N), dtype=cp.float32)
    _fn("ln_bwd_dwb", x.dtype)(((N + 255) // 256, G), (256,),
                               (dy, x, stats, cp.int32(ln), pw, cp.int32(with_b), M, N))
    out = _partial_sum(pw, parts)
    return (out[:N], out[N:]) if with_b else (out, None)


def _partial_sum(part, parts=1):
    """(parts * G, N) float32 partial sums -> (parts * N,): one small kernel (a CuPy reduction costs ~3x the
    host time); ``parts`` stacked (G, N) blocks give ``parts`` stacked sums."""
    cp = _be.cupy_module()
    G, N = part.shape
    G //= parts
    out = cp.ndarray((parts * N,), dtype=cp.float32)
    if N:
        _mod_fn("partial_sum")(((N * 32 + 255) // 256, parts), (256,), (part, out, G, N))
    return out


_CAST = {(_F32, _F16), (_F16, _F32)}
if _BF16 is not None:
    _CAST |= {(_F32, _BF16), (_BF16, _F32)}


def cast(x, dtype):
    """``x.astype(dtype)``: float32 <-> float16/bfloat16 of a contiguous, 16-byte aligned x by a vectorised
    kernel, anything else by CuPy."""
    dtype = np.dtype(dtype)
    if (x.dtype, dtype) not in _CAST or not x._c_contiguous or x.data.ptr % 16:
        return x.astype(dtype)
    y = _be.cupy_module().ndarray(x.shape, dtype=dtype)
    n = x.size
    if n:
        _fn("cast4", x.dtype, dtype)(*_grid4(n), (x, y, n))
    return y


def cast_many(arrs, dtype):
    """``[a.astype(dtype) for a in arrs]`` for up to three float32 arrays cast to float16/bfloat16 (an
    autocast linear's input, weight and bias) by one launch when all are contiguous and 16-byte aligned;
    else one ``cast`` each."""
    dtype = np.dtype(dtype)
    n = len(arrs)
    ok = 1 < n <= 3 and (_F32, dtype) in _CAST
    if ok:
        for a in arrs:
            if a.dtype != _F32 or not a._c_contiguous or a.data.ptr % 16:
                ok = False
                break
    if not ok:
        return [cast(a, dtype) for a in arrs]
    nd = _be.cupy_module().ndarray
    # the copies are slices of one allocation (256-byte aligned, as the pool's blocks): one call into the
    # allocator instead of three; they live as long as the longest-lived of them (the saved x and w copies)
    isz = dtype.itemsize
    offs, nbytes = [], 0
    for a in arrs:
        offs.append(nbytes)
        nbytes += (a.size * isz + 255) // 256 * 256
    buf = nd((nbytes // isz,), dtype=dtype).data
    args, outs, total = [], [], 0
    for a, off in zip(arrs, offs):  # Python ints reach the kernel as int64 (CuPy's conversion): no numpy scalars
        o = nd(a.shape, dtype=dtype, memptr=buf + off)
        outs.append(o)
        args += (a, o, a.size)
        total += a.size
    if total:
        if n < 3:
            args += (arrs[0], outs[0], 0) * (3 - n)
        _fn("cast4x3", _F32, dtype)(*_grid4(total), tuple(args))
    return outs


def cat(arrs, d):
    """``concatenate(arrs, axis=d)`` of 2..4 C-contiguous CuPy arrays of one dtype and shape but along d, by
    one kernel; None when that does not apply (the caller uses CuPy)."""
    if not 2 <= len(arrs) <= 4:
        return None
    a0 = arrs[0]
    dt = a0.dtype
    outer = 1
    for n in a0.shape[:d]:
        outer *= n
    widths = []
    for a in arrs:
        if a.dtype != dt or not a._c_contiguous:
            return None
        widths.append(a.size // outer if outer else 0)
    cp = _be.cupy_module()
    shape = list(a0.shape)
    shape[d] = sum(a.shape[d] for a in arrs)
    out = cp.ndarray(tuple(shape), dtype=dt)
    if out.size == 0:
        return out
    sizes = [w * dt.itemsize for w in widths] + [a.data.ptr for a in arrs] + [out.data.ptr]
    for unit, ctype in _CAT_UNITS:
        if all(v % unit == 0 for v in sizes):
            break
    ws = [w * dt.itemsize // unit for w in widths] + [0] * (4 - len(arrs))
    ps = list(arrs) + [arrs[0]] * (4 - len(arrs))
    total = out.nbytes // unit
    key = (cp.cuda.runtime.getDevice(), "cat4", unit)
    f = _functions.get(key)
    if f is None:
        f = _functions[key] = _mod().get_function(f"cat4<{ctype}>")
    f((int(min((total + 255) // 256, 4 * 65535)),), (256,), (*ps, *ws, out, outer))
    return out


def embedding(ids, w):
    """Rows of ``w`` (V, D) at integer ``ids`` (int64/int32, any shape) -> (out (*ids.shape, D), bad), ``bad`` a
    0-d bool set when some id is outside [0, V); None when that does not apply (the caller's generic path)."""
    ic = _ID_CTYPE.get(ids.dtype)
    if ic is None or w.ndim != 2 or not w._c_contiguous:
        return None
    cp = _be.cupy_module()
    ids = _c(ids)
    V, D = w.shape
    out = cp.ndarray(ids.shape + (D,), dtype=w.dtype)
    bad = cp.zeros((), dtype=cp.bool_)
    n = ids.size
    if n and D:
        row = D * w.dtype.itemsize
        for unit, ctype in _CAT_UNITS:
            if row % unit == 0 and w.data.ptr % unit == 0 and out.data.ptr % unit == 0:
                break
        W = row // unit
        key = (cp.cuda.runtime.getDevice(), "embed_rows", unit, ic)
        f = _functions.get(key)
        if f is None:
            f = _functions[key] = _mod().get_function(f"embed_rows<{ctype}, {ic}>")
        f(*_grid(n * W), (ids, w, out, n, W, V, bad))
    return out, bad


def embedding_bwd(g, ids, V, pad):
    """float32 (V, D) gradient of an embedding: rows of ``g`` (*ids.shape, D) scatter-added at ``ids`` by one
    launch (float32 atomics; row ``pad`` and out-of-range ids get nothing; ``pad`` -1: none); None when the
    dtypes do not apply."""
    ic = _ID_CTYPE.get(ids.dtype)
    if ic is None or g.dtype not in _CTYPE:
        return None
    cp = _be.cupy_module()
    ids, g = _c(ids), _c(g)
    D = g.shape[-1]
    out = cp.zeros((V, D), dtype=cp.float32)
    n = ids.size
    if n and D and V:
        key = (cp.cuda.runtime.getDevice(), "embed_bwd", g.dtype, ic)
        f = _functions.get(key)
        if f is None:
            f = _functions[key] = _mod().get_function(f"embed_bwd<{_CTYPE[g.dtype]}, {ic}>")
        f(*_grid(n * D), (ids, g, out, n, D, V, pad))
    return out


def _mod_fn(name):
    cp = _be.cupy_module()
    key = (cp.cuda.runtime.getDevice(), name)
    f = _functions.get(key)
    if f is None:
        f = _functions[key] = _mod().get_function(name)
    return f


def layer_norm_bwd(dy, x, w, eps, need_w=True, need_b=True, stats=None):
    """-> (dx, dw, db). ``stats``: the forward's (``layer_norm_fwd``), else the kernel recomputes them."""
    cp = _be.cupy_module()
    dy = _c(dy.astype(x.dtype, copy=False))
    x = _c(x)
    N = x.shape[-1]
    M = x.size // max(N, 1)
    dx = cp.ndarray(x.shape, x.dtype)
    kept = stats is not None and stats.shape == (2 * M,) and stats.dtype == _F32 and stats._c_contiguous
    if not kept:
        stats = cp.ndarray((2 * M,), dtype=cp.float32)
    if M:
        v = _ln_vpt(N)
        if v:
            _fn_vpt("ln_bwd_dx_warp", (x.dtype,), v)(((M + 3) // 4,), (128,), (
                dy, x, _ptr(w), stats, cp.int32(kept), dx, M, cp.int32(N), cp.float32(eps)))
        else:
            _fn("ln_bwd_dx", x.dtype)((M,), (_threads(min(N, 1024)),),
                                      (dy, x, _ptr(w), stats, cp.int32(kept), dx, N, cp.float32(eps)))
    dw = db = None
    if (need_w or need_b) and M:
        dw, db = _col_partials("ln_bwd_dwb", dy, x, stats, True, need_b)
    elif need_w or need_b:
        dw, db = cp.zeros((N,), cp.float32), cp.zeros((N,), cp.float32)
    return dx, dw, db


def rms_norm_fwd(x, w, eps):
    cp = _be.cupy_module()
    N = x.shape[-1]
    M = x.size // max(N, 1)
    x = _c(x)
    y = cp.ndarray(x.shape, x.dtype)
    rstd = cp.ndarray((M,), dtype=cp.float32)
    if M:
        _fn("rms_fwd", x.dtype)((M,), (_threads(min(N, 1024)),), (x, _ptr(w), y, rstd, N, cp.float32(eps)))
    return y, rstd


def rms_norm_bwd(dy, x, w, eps, need_w=True):
    cp = _be.cupy_module()
    dy = _c(dy.astype(x.dtype, copy=False))
    x = _c(x)
    N = x.shape[-1]
    M = x.size // max(N, 1)
    dx = cp.ndarray(x.shape, x.dtype)
    rstd = cp.ndarray((M,), dtype=cp.float32)
    if M:
        _fn("rms_bwd_dx", x.dtype)((M,), (_threads(min(N, 1024)),),
                                   (dy, x, _ptr(w), rstd, dx, N, cp.float32(eps)))
    dw = _col_partials("ln_bwd_dwb", dy, x, rstd, False, False)[0] if (need_w and M) else None
    return dx, dw


# ---------------------------------------------------------------- softmax
def _vpt(N):
    for v in _WARP_VPT:
        if N <= 32 * v:
            return v
    return None


def _fn_vpt(name, dtypes, vpt):
    cp = _be.cupy_module()
    key = (cp.cuda.runtime.getDevice(), name, vpt) + dtypes
    f = _functions.get(key)
    if f is None:
        f = _functions[key] = _mod().get_function(f"{name}<{', '.join(_CTYPE[d] for d in dtypes)}, {vpt}>")
    return f


def softmax_fwd(x, scale=1.0, causal=False, offset=0, out_dtype=None):
    """Softmax over the last dim of contiguous x; ``causal``: x is (..., Tq, Tk) and key j > query i
    + offset is masked (offset = Tk - Tq for a query block at the end). ``out_dtype`` (half/bfloat16
    from float32 scores) writes the probabilities in that dtype, saving a cast pass. Rows up to 1024
    elements take the warp-per-row kernel."""
    cp = _be.cupy_module()
    x = _c(x)
    N = x.shape[-1]
    M = x.size // max(N, 1)
    Tq = x.shape[-2] if x.ndim >= 2 else 1
    y = cp.ndarray(x.shape, dtype=x.dtype if out_dtype is None else out_dtype)
    if M:
        args = (cp.int64(N), cp.float32(scale), cp.int32(bool(causal)), cp.int64(Tq), cp.int64(offset))
        v = _vpt(N)
        if v is not None:
            _fn_vpt("softmax_fwd_warp", (x.dtype, y.dtype), v)(((M + 3) // 4,), (128,), (x, y, cp.int64(M)) + args)
        else:
            _fn("softmax_fwd", x.dtype, y.dtype)((M,), (_threads(min(N, 1024)),), (x, y) + args)
    return y


def softmax_bwd(y, dy, scale=1.0):
    """dx in y's dtype; dy is float32 or y's dtype (other dtypes are cast to y's)."""
    cp = _be.cupy_module()
    y = _c(y)
    if dy.dtype != y.dtype and dy.dtype != _F32:
        dy = dy.astype(y.dtype)
    dy = _c(dy)
    N = y.shape[-1]
    M = y.size // max(N, 1)
    dx = cp.ndarray(y.shape, y.dtype)
    if M:
        v = _vpt(N)
        if v is not None:
            _fn_vpt("softmax_bwd_warp", (y.dtype, dy.dtype, y.dtype), v)(
                ((M + 3) // 4,), (128,), (y, dy, dx, M, N, cp.float32(scale)))
        else:
            _fn("softmax_bwd", y.dtype, dy.dtype, y.dtype)((M,), (_threads(min(N, 1024)),),
                                                           (y, dy, dx, N, cp.float32(scale)))
    return dx


# ---------------------------------------------------------------- cross entropy
def xent_fwd(x, target, ignore_index=-100, label_smoothing=0.0):
    """x: (R, C) logits, target: (R,) int64 -> (per-row loss float32 (R,), stats float32 (R + 1,)):
    stats[:R] are the rows' log-sum-exp; stats[R] is written by ``xent_reduce``."""
    cp = _be.cupy_module()
    x = _c(x)
    R, C = x.shape
    tgt = _c(target.astype(cp.int64, copy=False))
    loss = cp.ndarray((R,), dtype=cp.float32)
    stats = cp.ndarray((R + 1,), dtype=cp.float32)
    if R:
        _fn("xent_fwd", x.dtype)((R,), (_threads(min(C, 1024)),),
                                 (x, tgt, loss, stats, cp.int64(C), cp.int64(ignore_index),
                                  cp.float32(label_smoothing)))
    return loss, stats


def xent_reduce(loss, target, stats, C, ignore_index=-100, mean=True, out_dtype=_F32):
    """One block: -> (0-d sum or mean of ``loss`` in ``out_dtype``, 0-d bool "a counted target is outside
    [0, C)"); stats[R] gets the count of rows whose target is not ignore_index."""
    cp = _be.cupy_module()
    R = loss.shape[0]
    tgt = _c(target.astype(cp.int64, copy=False))
    out = cp.ndarray((), dtype=out_dtype)
    bad = cp.ndarray((), dtype=cp.bool_)
    _fn("xent_reduce", out_dtype)((1,), (_threads(min(max(R, 1), 1024)),),
                                  (loss, tgt, stats, out, bad, cp.int64(R), cp.int64(C), cp.int64(ignore_index),
                                   cp.int32(mean)))
    return out, bad


def xent_bwd(x, target, stats, g, ignore_index=-100, label_smoothing=0.0, mean=False):
    """g: per-row upstream gradient (R,), or a 1-element array applied to every row (divided by the count
    in stats[R] when ``mean``); stats from ``xent_fwd`` (+ ``xent_reduce`` for ``mean``)."""
    cp = _be.cupy_module()
    x = _c(x)
    R, C = x.shape
    tgt = _c(target.astype(cp.int64, copy=False))
    g = _c(g.astype(cp.float32, copy=False)).reshape(-1)
    dx = cp.ndarray(x.shape, x.dtype)
    if R:
        mode = 2 if mean else (1 if g.size == 1 and R != 1 else 0)
        _fn("xent_bwd", x.dtype)((R,), (_threads(min(C, 1024)),),
                                 (x, tgt, stats, g, dx, cp.int64(R), cp.int64(C), cp.int64(ignore_index),
                                  cp.float32(label_smoothing), cp.int32(mode)))
    return dx


# ---------------------------------------------------------------- pointwise, in the array's dtype
def _grid(n):
    return (int(min(max((n + 255) // 256, 1), 4 * 65535)),), (256,)


def _grid4(n):
    """Launch shape of the four-elements-per-thread kernels (at least one block for the n % 4 tail)."""
    return (int(min((n // 4 + 255) // 256 + 1, 4 * 65535)),), (256,)


def gelu_fwd(x, approximate="none"):
    cp = _be.cupy_module()
    x = _c(x)
    y = cp.ndarray(x.shape, x.dtype)
    if x.size:
        args = (x, y, x.size, cp.int32(approximate == "tanh"))
        if (x.data.ptr | y.data.ptr) % 16 == 0:
            _fn("gelu_fwd4", x.dtype)(*_grid4(x.size), args)
        else:
            _fn("gelu_fwd", x.dtype)(*_grid(x.size), args)
    return y


def gelu_bwd(x, g, approximate="none"):
    cp = _be.cupy_module()
    x = _c(x)
    g = _c(cp.broadcast_to(g.astype(x.dtype, copy=False), x.shape))
    dx = cp.ndarray(x.shape, x.dtype)
    if x.size:
        args = (x, g, dx, x.size, cp.int32(approximate == "tanh"))
        if (x.data.ptr | g.data.ptr | dx.data.ptr) % 16 == 0:
            _fn("gelu_bwd4", x.dtype)(*_grid4(x.size), args)
        else:
            _fn("gelu_bwd", x.dtype)(*_grid(x.size), args)
    return dx


def bias_add_(y, b):
    """y += b over y's last dim, in place; y contiguous, b (N,) of y's dtype."""
    b = _c(b.astype(y.dtype, copy=False))
    if y.size:
        _fn("bias_add", y.dtype)(*_grid(y.size), (y, b, y.size, y.shape[-1]))
    return y


def col_sum(x):
    """Column sums of an (M, N) array in float32 (bias gradients): coalesced partials, then one sum."""
    cp = _be.cupy_module()
    x = _c(x)
    M, N = x.shape
    G = int(min(128, max(1, M // 64)))
    part = cp.ndarray((G, N), dtype=cp.float32)
    if M and N:
        _fn("col_sum", x.dtype)(((N + 255) // 256, G), (256,), (x, part, M, N))
    else:
        part.fill(0)
    return _partial_sum(part)


# ---------------------------------------------------------------- same-shape binary ops, four per thread
# (a dtype, b dtype) -> output dtype: one dtype, or float32 with a 2-byte float (PyTorch's promotion)
_BINARY = {(d, d): d for d in _CTYPE}
for _h in (_F16, _BF16):
    if _h is not None:
        _BINARY[(_F32, _h)] = _BINARY[(_h, _F32)] = _F32
# Sizes below which two arrays of one dtype are left to CuPy: its ufunc call costs ~1 us less host time
# than a RawKernel call (H100 host, .scratch-style A/B in BENCHMARKS.md), and only at larger sizes does
# its one-element-per-thread (float32) or generic (2-byte) kernel cost device time.
BINARY_MIN = {_F32: 1 << 20, _F16: 1 << 16}
if _BF16 is not None:
    BINARY_MIN[_BF16] = 1 << 16


def binary(a, b, op, alpha=1.0):
    """``a + alpha*b`` (op 0) or ``a * b`` (op 1) of two same-shape, C-contiguous, 16-byte aligned float arrays
    of one dtype (at least ``BINARY_MIN`` elements) or of float32 with float16/bfloat16 (any size; float32
    out, no cast launch first), by one launch; None when that does not apply (the caller's generic path)."""
    if a.shape != b.shape:
        return None
    od = _BINARY.get((a.dtype, b.dtype))
    if od is None or (a.dtype == b.dtype and a.size < BINARY_MIN[od]):
        return None
    if not (a._c_contiguous and b._c_contiguous) or (a.data.ptr | b.data.ptr) % 16:
        return None
    cp = _be.cupy_module()
    c = cp.ndarray(a.shape, od)
    n = a.size
    if n:
        key = (cp.cuda.runtime.getDevice(), "binary4", a.dtype, b.dtype)
        f = _functions.get(key)
        if f is None:
            f = _functions[key] = _mod().get_function(f"binary4<{_CTYPE[a.dtype]}, {_CTYPE[b.dtype]}, {_CTYPE[od]}>")
        f(*_grid4(n), (a, b, c, n, cp.float32(alpha), cp.int32(op)))
    return c


# flash attention lives in its own file (kernels/flash.py); these are its public names
from .flash import FLASH_DIMS, TC_DIMS, flash_bwd, flash_fwd, flash_ok, tensor_cores, tiled_f32  # noqa: E402,F401
# multi-tensor AdamW (kernels/adamw.py, which uses _mod above)
from .adamw import AdamWMulti  # noqa: E402,F401
