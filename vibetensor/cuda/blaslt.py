"""2-d GEMMs through cuBLASLt with cached plans, and bias / bias-gradient fused into the GEMM epilogue.

Why: a plain ``cublasGemmStridedBatchedEx`` call costs ~25 us of host time (cuBLAS picks its kernel on
every call); with the matmul descriptor, layouts and the chosen algorithm cached per shape (as
PyTorch's cuBLASLt path does), the call is one ``cublasLtMatmul``. The epilogues also drop the
separate bias-add kernel of ``linear`` and the column-sum kernel of its bias gradient.

Row-major C (m x n) = A (m x k) @ B (k x n) is computed column-major as C^T = B^T A^T, as in blas.py:
cuBLASLt's first operand is our b, its second our a. ``gemm`` returns False when cuBLASLt has no
algorithm for a case (the caller then uses blas.py's path). Plans are per thread and device (a plan's
descriptor carries the bias pointer, set per call). The workspace is allocated once per device
outside any graph pool, so calls can be captured in CUDA graphs.
"""
from __future__ import annotations

import ctypes
import os
import threading

_EPI_DEFAULT, _EPI_BIAS, _EPI_BGRADB = 1, 4, 512
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE, _DESC_BIAS_POINTER = 3, 4, 7, 8
_PREF_MAX_WORKSPACE, _PREF_MIN_ALIGN = 1, (5, 6, 7, 8)
_ALIGN = 16  # plans assume 16-byte aligned operands; others take blas.py's path
_WORKSPACE = 32 << 20
_HEUR_SIZE = 96  # sizeof(cublasLtMatmulHeuristicResult_t): algo (64) + workspaceSize + state + waves + 4 ints
_R64F = 1

_lock = threading.Lock()
_lib = None
_failed = False
_handles: dict = {}
_plans: dict = {}
enabled = os.environ.get("VT_CUBLASLT", "1") != "0"


def _load():
    global _lib, _failed
    if _lib is not None or _failed:
        return _lib
    try:
        import cupy_backends.cuda.libs.cublas  # noqa: F401  (loads CuPy's libcublas and its libcublasLt)
        path = None
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "libcublasLt.so" in p:
                    path = p
                    break
        lib = ctypes.CDLL(path or "libcublasLt.so")
    except (OSError, ImportError):
        _failed = True
        return None
    P, I, U64, SZ = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t
    lib.cublasLtCreate.argtypes = [ctypes.POINTER(P)]
    lib.cublasLtMatmulDescCreate.argtypes = [ctypes.POINTER(P), I, I]
    lib.cublasLtMatmulDescSetAttribute.argtypes = [P, I, P, SZ]
    lib.cublasLtMatrixLayoutCreate.argtypes = [ctypes.POINTER(P), I, U64, U64, ctypes.c_int64]
    lib.cublasLtMatmulPreferenceCreate.argtypes = [ctypes.POINTER(P)]
    lib.cublasLtMatmulPreferenceSetAttribute.argtypes = [P, I, P, SZ]
    lib.cublasLtMatmulAlgoGetHeuristic.argtypes = [P, P, P, P, P, P, P, I, P, ctypes.POINTER(I)]
    lib.cublasLtMatmul.argtypes = [P, P, P, P, P, P, P, P, P, P, P, P, P, P, SZ, P]
    _lib = lib
    return lib


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def _handle(cp, dev):
    h = _handles.get(dev)
    if h is None:
        with _lock:
            h = _handles.get(dev)
            if h is None:
                hp = ctypes.c_void_p()
                _check(_lib.cublasLtCreate(ctypes.byref(hp)), "cublasLtCreate")
                ws = cp.cuda.memory.alloc(_WORKSPACE)  # outside any graph pool; lives with the handle
                h = _handles[dev] = (hp, ws)
    return h


def _set(fn, obj, attr, value):
    _check(fn(obj, attr, ctypes.byref(value), ctypes.sizeof(value)), "cublasLt set attribute")


def _plan(h, key, bias_ptr):
    """Descriptor, layouts and the heuristic's first algorithm for one GEMM shape (None: no algorithm)."""
    lib = _lib
    dt, ct, _bt, comp, scale, opa, opb, rows, cols, k, lda, ldb, epi = key[2:]
    desc = ctypes.c_void_p()
    _check(lib.cublasLtMatmulDescCreate(ctypes.byref(desc), comp, scale), "cublasLtMatmulDescCreate")
    sd = lib.cublasLtMatmulDescSetAttribute
    _set(sd, desc, _DESC_TRANSA, ctypes.c_int32(opa))
    _set(sd, desc, _DESC_TRANSB, ctypes.c_int32(opb))
    if epi != _EPI_DEFAULT:
        _set(sd, desc, _DESC_EPILOGUE, ctypes.c_int32(epi))
        _set(sd, desc, _DESC_BIAS_POINTER, ctypes.c_void_p(bias_ptr))
    lay = []
    for t, r, c, ld in ((dt, rows if opa == 0 else k, k if opa == 0 else rows, lda),
                        (dt, k if opb == 0 else cols, cols if opb == 0 else k, ldb),
                        (ct, rows, cols, rows)):
        d = ctypes.c_void_p()
        _check(lib.cublasLtMatrixLayoutCreate(ctypes.byref(d), t, r, c, ld), "cublasLtMatrixLayoutCreate")
        lay.append(d)
    pref = ctypes.c_void_p()
    _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "cublasLtMatmulPreferenceCreate")
    sp = lib.cublasLtMatmulPreferenceSetAttribute
    _set(sp, pref, _PREF_MAX_WORKSPACE, ctypes.c_uint64(_WORKSPACE))
    for attr in _PREF_MIN_ALIGN:
        _set(sp, pref, attr, ctypes.c_uint32(_ALIGN))
    res = ctypes.create_string_buffer(_HEUR_SIZE)
    n = ctypes.c_int(0)
    st = lib.cublasLtMatmulAlgoGetHeuristic(h, desc, lay[0], lay[1], lay[2], lay[2], pref, 1, res, ctypes.byref(n))
    if st != 0 or n.value == 0:
        return None  # descriptors of a failed plan are kept (few, tiny) rather than tracked for destroy
    algo = ctypes.create_string_buffer(res.raw[:64], 64)
    slot = ctypes.c_void_p(bias_ptr)  # the bias pointer as set per call (plans are per thread: no race)
    return desc, lay[0], lay[1], lay[2], algo, slot, ctypes.byref(slot)


def gemm(cp, a, b, c, la, lb, m, n, k, dt, ct, comp, scale, one, zero, bias=None, epilogue=_EPI_DEFAULT):
    """c (m x n, row-major, contiguous) = a @ b (+ bias per column, or bias <- column sums of a^T: see
    ``linear``/``linear_grads``), 2-d operands described by blas.py's (op, ld) layouts; ``one``/``zero``
    are ctypes pointers to alpha and beta (``blas._types``). False when cuBLASLt cannot do it (not
    loaded, misaligned operands, no algorithm)."""
    if not enabled or (_lib is None and _load() is None):
        return False
    ap, bp, cptr = a.data.ptr, b.data.ptr, c.data.ptr
    bias_ptr = 0 if bias is None else bias.data.ptr
    if ((ap | bp | cptr | bias_ptr) % _ALIGN or (la[1] * a.itemsize) % _ALIGN or (lb[1] * b.itemsize) % _ALIGN
            or (n * c.itemsize) % _ALIGN):
        return False
    dev = c.device.id
    hw = _handles.get(dev) or _handle(cp, dev)
    bt = -1 if bias is None else bias.dtype.num
    key = (threading.get_ident(), dev, dt, ct, bt, comp, scale, lb[0], la[0], n, m, k, lb[1], la[1], epilogue)
    plan = _plans.get(key, 0)
    if plan == 0:
        plan = _plans[key] = _plan(hw[0], key, bias_ptr)
    if plan is None:
        return False
    desc, ldesc_a, ldesc_b, ldesc_c, algo, slot, slot_ref = plan
    lib = _lib
    if bias is not None and slot.value != bias_ptr:  # skip the setter when the last call on this plan had this bias
        slot.value = bias_ptr
        lib.cublasLtMatmulDescSetAttribute(desc, _DESC_BIAS_POINTER, slot_ref, 8)
    st = lib.cublasLtMatmul(hw[0], desc, one, bp, ldesc_a, ap, ldesc_b, zero, cptr, ldesc_c, cptr, ldesc_c, algo,
                            hw[1].ptr, _WORKSPACE, cp.cuda.get_current_stream().ptr)
    if st:
        _check(st, "cublasLtMatmul")
    return True
