"""Matrix products through our own cuBLAS handle (ctypes), so they can be captured in CUDA graphs.

CuPy refuses cuBLAS calls while a stream is capturing (its setStream wrapper raises), which would
rule out whole-step graph capture of anything with a matmul. We call ``cublasGemmStridedBatchedEx``
directly on a per-device handle with a fixed workspace (as PyTorch does, so capture never allocates),
on the current stream. Row-major operands map to column-major GEMM by computing C^T = B^T A^T;
transposed views are passed as transposes (no copy); batch dims are flattened when their strides
allow, else made contiguous. (CuPy's Cython binding driving the same handle outside capture was
measured: ~21 us per call against ~25 us for the ctypes path -- cuBLAS's own host work dominates.)
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..backends.cuda import matmul as _mm_flags
from ..core import backend as _be
from . import blaslt

_R32F, _R64F, _R16F, _R16BF = 0, 1, 2, 14
_C32F, _C32F_TF32, _C64F = 68, 77, 70
_OP_N, _OP_T = 0, 1
_ALGO_DEFAULT = -1
_WORKSPACE = 32 << 20

_lock = threading.Lock()
_lib = None
_handles: dict = {}
_last_stream: dict = {}
_one32, _zero32 = ctypes.c_float(1.0), ctypes.c_float(0.0)
_one64, _zero64 = ctypes.c_double(1.0), ctypes.c_double(0.0)
# alpha/beta as the pointers the GEMM calls take, made once (a byref per call costs on the per-op path)
_ONE32, _ZERO32 = ctypes.byref(_one32), ctypes.byref(_zero32)
_ONE64, _ZERO64 = ctypes.byref(_one64), ctypes.byref(_zero64)


def _load():
    global _lib
    if _lib is not None:
        return _lib
    import cupy_backends.cuda.libs.cublas  # noqa: F401  (makes the process load CuPy's libcublas)
    path = None
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "libcublas.so" in p and "Lt" not in p:
                path = p
                break
    lib = ctypes.CDLL(path or "libcublas.so")
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    lib.cublasSetStream_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cublasSetWorkspace_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.cublasGemmStridedBatchedEx.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong,
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    _lib = lib
    return lib


def _handle(cp):
    dev = cp.cuda.runtime.getDevice()
    h = _handles.get(dev)
    if h is None:
        with _lock:
            h = _handles.get(dev)
            if h is None:
                lib = _load()
                hp = ctypes.c_void_p()
                _check(lib.cublasCreate_v2(ctypes.byref(hp)), "cublasCreate")
                ws = cp.cuda.memory.alloc(_WORKSPACE)  # outside any graph pool; lives with the handle
                _check(lib.cublasSetWorkspace_v2(hp, ws.ptr, _WORKSPACE), "cublasSetWorkspace")
                h = _handles[dev] = (hp, ws)
    return h[0]


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


_TYPES = {np.dtype(np.float32): _R32F, np.dtype(np.float64): _R64F, np.dtype(np.float16): _R16F}
try:
    import ml_dtypes
    _TYPES[np.dtype(ml_dtypes.bfloat16)] = _R16BF
except ImportError:  # pragma: no cover
    pass


def supported(a, b) -> bool:
    return a.dtype == b.dtype and a.dtype in _TYPES and a.ndim >= 1 and b.ndim >= 1


def _mat_layout(x):
    """(op, ld) describing x's last two dims (r, c) to column-major GEMM, or None if unsupported."""
    r, c = x.shape[-2], x.shape[-1]
    isz = x.itemsize
    s0, s1 = x.strides[-2] // isz, x.strides[-1] // isz
    if c == 1:
        s1 = 1
    if r == 1:
        s0 = max(c, 1) if s1 == 1 else s0
    if s1 == 1 and s0 >= max(c, 1):
        return _OP_N, s0
    if s0 == 1 and s1 >= max(r, 1):
        return _OP_T, s1
    return None


def _batch_stride(x, batch_shape):
    """A single element stride over x's (broadcast) batch dims, or None."""
    nb = len(batch_shape)
    isz = x.itemsize
    lead = x.ndim - 2
    shape = [1] * (nb - lead) + list(x.shape[:-2])
    strides = [0] * (nb - lead) + [s // isz for s in x.strides[:-2]]
    dims = [(s if sh != 1 else 0, bs) for s, sh, bs in zip(strides, shape, batch_shape)]
    dims = [(s, n) for s, n in dims if n != 1]
    if not dims:
        return 0
    if all(s == 0 for s, _ in dims):
        return 0
    # collapse: stride[i] == stride[i+1] * n[i+1]
    for i in range(len(dims) - 1):
        if dims[i][0] != dims[i + 1][0] * dims[i + 1][1]:
            return None
    return dims[-1][0]


def matmul(a, b, out_dtype=None):
    """``a @ b`` for CuPy float arrays with NumPy/PyTorch matmul semantics (1-d and batch broadcast).
    ``out_dtype=float32`` with half inputs keeps the float32 accumulator (attention scores)."""
    cp = _be.cupy_module()
    sq_a = a.ndim == 1
    sq_b = b.ndim == 1
    if sq_a:
        a = a[None, :]
    if sq_b:
        b = b[:, None]
    m, k = a.shape[-2], a.shape[-1]
    n = b.shape[-1]
    if a.ndim == 2 and b.ndim == 2:  # the common case: no batch bookkeeping
        batch, nbatch = (), 1
    else:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        nbatch = 1
        for d in batch:
            nbatch *= d
    la, lb = _mat_layout(a), _mat_layout(b)
    if batch:
        sa, sb = _batch_stride(a, batch), _batch_stride(b, batch)
    else:
        sa = sb = 0
    if la is None or sa is None:
        a = cp.ascontiguousarray(cp.broadcast_to(a, batch + (m, k)))
        la, sa = (_OP_N, k), (m * k if nbatch > 1 else 0)
    if lb is None or sb is None:
        b = cp.ascontiguousarray(cp.broadcast_to(b, batch + (k, n)))
        lb, sb = (_OP_N, n), (k * n if nbatch > 1 else 0)
    c = cp.ndarray(batch + (m, n), dtype=a.dtype if out_dtype is None else out_dtype)
    if c.size:
        if k == 0:
            c.fill(0)
        else:
            _gemm(cp, a, b, c, la, lb, sa, sb, m, n, k, nbatch)
    if sq_a:
        c = c[..., 0, :]
    if sq_b:
        c = c[..., 0]
    return c


def _types(a, c):
    """(cuBLAS data type of the inputs, of the output, compute type, scale type, &alpha, &beta)."""
    dt = _TYPES[a.dtype]
    ct = _TYPES[c.dtype]
    if dt == _R64F:
        return dt, ct, _C64F, _R64F, _ONE64, _ZERO64
    return dt, ct, (_C32F_TF32 if (dt == _R32F and _mm_flags._allow_tf32) else _C32F), _R32F, _ONE32, _ZERO32


def _gemm(cp, a, b, c, la, lb, sa, sb, m, n, k, nbatch, ldc=None, stride_c=None, accumulate=False):
    """c = a @ b (c += a @ b with ``accumulate``); c is contiguous unless ``ldc``/``stride_c`` describe
    it (row stride, batch stride in elements: a slice of a larger array)."""
    dt, ct, comp, scale, one, zero = _types(a, c)
    if ldc is None:
        ldc, stride_c = n, m * n
        if nbatch == 1 and not accumulate and blaslt.gemm(cp, a, b, c, la, lb, m, n, k, dt, ct, comp, scale,
                                                          one, zero):
            return
    h = _handle(cp)
    # column-major: C^T (n x m) = op(B^T) (n x k) @ op(A^T) (k x m)
    lib = _lib or _load()
    sp = cp.cuda.get_current_stream().ptr
    if _last_stream.get(h.value) != sp:  # rebinding the stream costs a call: only when it changed
        lib.cublasSetStream_v2(h, sp)
        _last_stream[h.value] = sp
    st = lib.cublasGemmStridedBatchedEx(
        h, lb[0], la[0], n, m, k, one,
        b.data.ptr, dt, lb[1], sb, a.data.ptr, dt, la[1], sa, one if accumulate else zero,
        c.data.ptr, ct, ldc, stride_c, nbatch, comp, _ALGO_DEFAULT)
    _check(st, "cublasGemmStridedBatchedEx")


def matmul_into(a, b, c, accumulate=False):
    """``c[...] = a @ b`` (``+=`` with ``accumulate``) written in place, for c a view with unit column
    stride and one batch stride (e.g. a row block of a larger array: attention's causal chunks), a and b
    of c's batch shape and dtype. The product is computed in the float32 accumulator and rounded once
    into c (with ``accumulate``, once per call)."""
    batch = c.shape[:-2]
    m, n = c.shape[-2:]
    k = a.shape[-1]
    if not (supported(a, b) and a.dtype == c.dtype and a.shape[:-2] == b.shape[:-2] == batch
            and a.shape[-2] == m and b.shape[-2:] == (k, n)):
        raise ValueError(f"matmul_into: shapes {a.shape} @ {b.shape} -> {c.shape}, dtypes {a.dtype}, "
                         f"{b.dtype} -> {c.dtype} do not match")
    lc, la, lb = _mat_layout(c), _mat_layout(a), _mat_layout(b)
    sc, sa, sb = _batch_stride(c, batch), _batch_stride(a, batch), _batch_stride(b, batch)
    if lc is None or lc[0] != _OP_N or sc is None:
        raise ValueError(f"matmul_into: the output (strides {c.strides}) needs unit column stride and one batch "
                         f"stride")
    cp = _be.cupy_module()
    if la is None or sa is None:
        a = cp.ascontiguousarray(a)
        la, sa = (_OP_N, k), m * k
    if lb is None or sb is None:
        b = cp.ascontiguousarray(b)
        lb, sb = (_OP_N, n), k * n
    nbatch = 1
    for d in batch:
        nbatch *= d
    if c.size and k:
        _gemm(cp, a, b, c, la, lb, sa, sb, m, n, k, nbatch, lc[1], sc, accumulate)
    elif c.size and not accumulate:
        c.fill(0)


def linear_bias(x2, w, bias):
    """``x2 @ w.T + bias`` for a 2-d x2 and contiguous w, bias in x2's dtype, the bias added in the
    GEMM's epilogue (cuBLASLt); None when that path cannot take it (the caller adds the bias itself)."""
    cp = _be.cupy_module()
    if not (supported(x2, w) and x2.ndim == 2 and w.ndim == 2 and bias.dtype == x2.dtype and bias.ndim == 1
            and w._c_contiguous and bias._c_contiguous):
        return None
    m, k = x2.shape
    n = w.shape[0]
    la, lb = _mat_layout(x2), (_OP_T, k)
    if la is None or m == 0 or n == 0 or k == 0:
        return None
    c = cp.ndarray((m, n), dtype=x2.dtype)
    dt, ct, comp, scale, one, zero = _types(x2, c)
    if blaslt.gemm(cp, x2, w, c, la, lb, m, n, k, dt, ct, comp, scale, one, zero, bias, blaslt._EPI_BIAS):
        return c
    return None


def weight_and_bias_grads(g2, x2, out_dtype=None):
    """(``g2.T @ x2``, ``g2.sum(0)``) for contiguous 2-d g2 (N x out) and x2 (N x in), the bias gradient
    reduced in the GEMM's epilogue (cuBLASLt), both in ``out_dtype`` (float32 from half operands: the
    accumulator unrounded) or g2's dtype; None when that path cannot take it."""
    cp = _be.cupy_module()
    if not (supported(g2, x2) and g2.ndim == 2 and x2.ndim == 2 and g2._c_contiguous):
        return None
    k, m = g2.shape
    n = x2.shape[1]
    lb = _mat_layout(x2)
    if lb is None or m == 0 or n == 0 or k == 0:
        return None
    gw = cp.ndarray((m, n), dtype=g2.dtype if out_dtype is None else out_dtype)
    gb = cp.ndarray((m,), dtype=gw.dtype)
    dt, ct, comp, scale, one, zero = _types(g2, gw)
    if blaslt.gemm(cp, g2.T, x2, gw, (_OP_T, m), lb, m, n, k, dt, ct, comp, scale, one, zero, gb,
                   blaslt._EPI_BGRADB):
        return gw, gb
    return None
