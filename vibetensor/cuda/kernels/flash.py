"""Flash-style attention on CUDA: the tensor-core kernels (float16/bfloat16, sm_80+,
``src_flash_tc.cu``), the register-tiled float32 ones (``src_flash_f32.cu``) and the one-row-per-thread
CUDA-core ones (any float dtype, ``src_flash.cu``), each compiled into its own module on the first
attention call. Forward ``flash_fwd`` -> (o, lse); backward ``flash_bwd``
recomputes them. Outputs mirror their inputs' layout (``_out_like``)."""
from __future__ import annotations

import os

import numpy as np

from ...core import backend as _be
from . import _CTYPE, _DIR, _c, _functions, ml_dtypes

FLASH_DIMS = (16, 32, 64)  # head dims with a compiled kernel (per-thread rows of D floats in registers)
# head dims of the tensor-core kernels (float16/bfloat16, sm_80+): multiples of 16 whose fragments fit the
# registers of a 128-thread block (sm_90 ptxas: D = 128's dK/dV kernel uses all 255 and spills 16 bytes)
TC_DIMS = (16, 32, 64, 96, 128)
_FL_ROWS = 64
_flash_modules: dict = {}


def _flash_fn(name, dtype, D):
    cp = _be.cupy_module()
    dev = cp.cuda.runtime.getDevice()
    key = (dev, name, dtype, D)
    f = _functions.get(key)
    if f is None:
        m = _flash_modules.get(dev)
        if m is None:  # its own module: compiled on the first attention call only
            names = [f"{k}<{t}, {d}>" for k in ("flash_fwd", "flash_bwd_delta", "flash_bwd_dq", "flash_bwd_dkdv")
                     for t in _CTYPE.values() for d in FLASH_DIMS]
            src = open(os.path.join(_DIR, "src_rows.cu")).read() + open(os.path.join(_DIR, "src_flash.cu")).read()
            m = _flash_modules[dev] = cp.RawModule(code=src, options=("--std=c++14",), name_expressions=names)
        f = _functions[key] = m.get_function(f"{name}<{_CTYPE[dtype]}, {D}>")
    return f


_tc_modules: dict = {}   # (device, head dim, options) -> RawModule of the tensor-core flash kernels
# extra NVRTC options of the tensor-core module, e.g. ("-DVT_TC_BWD_STAGES=1",): the variants that
# src_flash_tc.cu keeps behind macros, for side-by-side timing (scripts/flash_variants.py) and tests
TC_OPTIONS: tuple = ()
_sm80: dict = {}         # device -> compute capability >= 8.0 (mma.sync with bf16)
_HALF = (np.dtype(np.float16),) + ((np.dtype(ml_dtypes.bfloat16),) if ml_dtypes is not None else ())


def tensor_cores(dtype) -> bool:
    """float16/bfloat16 on an sm_80+ device: the mma.sync flash kernels (src_flash_tc.cu) apply."""
    if dtype not in _HALF:
        return False
    cp = _be.cupy_module()
    dev = cp.cuda.runtime.getDevice()
    ok = _sm80.get(dev)
    if ok is None:
        ok = _sm80[dev] = int(cp.cuda.Device(dev).compute_capability) >= 80
    return ok


def _flash_tc_fn(name, dtype, D):
    """A kernel of the tensor-core module for head dim D (its own module per D, compiled on the first
    call with that D: the larger dims take seconds of NVRTC that a model of another D never pays)."""
    cp = _be.cupy_module()
    dev = cp.cuda.runtime.getDevice()
    key = (dev, name, dtype, D, "tc", TC_OPTIONS)
    f = _functions.get(key)
    if f is None:
        m = _tc_modules.get((dev, D, TC_OPTIONS))
        if m is None:
            names = [f"{k}<{_CTYPE[t]}, {D}>" for k in ("flash_fwd_tc", "flash_bwd_dq_tc", "flash_bwd_dkdv_tc")
                     for t in _HALF]
            src = "".join(open(os.path.join(_DIR, f)).read()
                          for f in ("src_rows.cu", "src_flash.cu", "src_flash_tc.cu"))
            m = _tc_modules[(dev, D, TC_OPTIONS)] = cp.RawModule(code=src, options=("--std=c++14",) + TC_OPTIONS,
                                                                 name_expressions=names)
        f = _functions[key] = m.get_function(f"{name}<{_CTYPE[dtype]}, {D}>")
    return f


_TC_ROWS = 64
_F32 = np.dtype(np.float32)
TILED_F32 = True         # float32 takes src_flash_f32.cu (False: src_flash.cu's kernels, the tests' second opinion)
_f32_modules: dict = {}  # device -> RawModule of the tiled float32 kernels
_TF_ROWS, _TF_PS = 64, 68


def _f32_smem(name, D):
    """Bytes of dynamic shared memory each tiled float32 kernel takes (see src_flash_f32.cu): row-major
    tiles of stride D + 4, swizzled tiles of stride D, score tiles of stride 68, dK/dV's lse and delta."""
    owned, swizzled, scores = {"flash_fwd_f32": (2, 1, 1), "flash_bwd_dq_f32": (2, 2, 1),
                               "flash_bwd_dkdv_f32": (2, 2, 2)}[name]
    extra = 2 * _TF_ROWS if name == "flash_bwd_dkdv_f32" else 0
    return 4 * _TF_ROWS * (owned * (D + 4) + swizzled * D + scores * _TF_PS) + 4 * extra


def _aligned(x, st):
    """Rows start on 16 bytes: the tiled kernels load float4s."""
    return x.data.ptr % 16 == 0 and all(v % 4 == 0 for v in st)


def _bht16(x):
    """``_bht`` for the tiled kernels: a contiguous copy when rows are not 16-byte aligned."""
    x2, H, st = _bht(x)
    if not _aligned(x2, st):
        x2, H, st = _bht(_c(x2))
    return x2, H, st


def _flash_f32_fn(name, D):
    """(kernel, shared bytes): the compiled tiled float32 kernel, its shared-memory limit raised once."""
    cp = _be.cupy_module()
    dev = cp.cuda.runtime.getDevice()
    key = (dev, name, D, "f32")
    f = _functions.get(key)
    if f is None:
        m = _f32_modules.get(dev)
        if m is None:
            names = [f"{k}<{d}>" for k in ("flash_fwd_f32", "flash_bwd_dq_f32", "flash_bwd_dkdv_f32")
                     for d in FLASH_DIMS]
            src = "".join(open(os.path.join(_DIR, f)).read()
                          for f in ("src_rows.cu", "src_flash.cu", "src_flash_f32.cu"))
            m = _f32_modules[dev] = cp.RawModule(code=src, options=("--std=c++14",), name_expressions=names)
        k = m.get_function(f"{name}<{D}>")
        k.max_dynamic_shared_size_bytes = _f32_smem(name, D)  # above the 48 KB default
        f = _functions[key] = (k, _f32_smem(name, D))
    return f


def tiled_f32(dtype) -> bool:
    """float32 with TILED_F32 on: the register-tiled kernels (src_flash_f32.cu) apply."""
    return TILED_F32 and dtype == _F32


def flash_ok(q, k, v) -> bool:
    """Shapes and dtypes the flash kernels take: (..., T, D) with D in FLASH_DIMS (or TC_DIMS where the
    tensor-core kernels apply), equal batch dims, one float dtype, k and v of one shape."""
    D = q.shape[-1] if q.ndim >= 2 else 0
    return (q.ndim >= 2 and (D in FLASH_DIMS or (D in TC_DIMS and tensor_cores(q.dtype)))
            and k.shape == v.shape and k.shape[-1] == q.shape[-1]
            and q.shape[:-2] == k.shape[:-2] and q.dtype == k.dtype == v.dtype and q.dtype in _CTYPE
            and q.shape[-2] > 0 and k.shape[-2] > 0 and q.size // (q.shape[-2] * q.shape[-1]) < 65536)


def _bht(x):
    """(array with unit stride along D, heads per batch entry, (batch, head, token) element strides)."""
    if x.strides[-1] != x.itemsize or x.ndim > 4:
        x = _c(x)
    if x.ndim > 4:
        x = x.reshape((-1,) + x.shape[-3:])
    isz = x.itemsize
    st = [s // isz for s in x.strides]
    if x.ndim == 4:
        return x, x.shape[1], (st[0], st[1], st[2])
    if x.ndim == 3:
        return x, 1, (st[0], 0, st[1])
    return x, 1, (0, 0, st[0])


def _out_like(x, dtype, mirror=True):
    """An empty output of x's shape (..., T, D) and its (batch, head, token) element strides. With
    ``mirror``, a 4-d x whose head stride is below its token stride (a (B, T, H, D) buffer seen as
    (B, H, T, D), as ``qkv.reshape(b, t, h, d).transpose(1, 2)`` gives) gets the same layout, so the
    caller's ``transpose(1, 2).reshape(b, t, h * d)`` is a view, as in PyTorch; else contiguous."""
    cp = _be.cupy_module()
    if mirror and x.ndim == 4 and x.strides[1] < x.strides[2]:
        B, H, T, D = x.shape
        return cp.ndarray((B, T, H, D), dtype=dtype).transpose(0, 2, 1, 3), (T * H * D, D, H * D)
    o = cp.ndarray(x.shape, dtype=dtype)
    return o, _bht(o)[2]


def _grads_like(q, k, v, dtype):
    """(dq, its strides, dk, dv, their strides): each gradient in its input's layout (``_out_like``; dk and
    dv share k's). q, k, v that are the three thirds of one fused projection's rows (``qkv.split(d, -1)``
    viewed as heads: one shape and strides, token stride 3 * H * D, k and v H * D and 2 * H * D elements
    after q) get their gradients as the same thirds of one new buffer: the split's backward then joins
    them without a copy (``shape_split.join_adjacent``)."""
    if q.ndim == 4 and q.shape == k.shape == v.shape and q.strides == k.strides == v.strides:
        B, H, T, D = q.shape
        isz = q.itemsize
        sb, sh, st, sd = (x // isz for x in q.strides)
        hd = H * D
        if (sd == 1 and sh == D and st == 3 * hd and sb == T * st and k.data.ptr - q.data.ptr == hd * isz
                and v.data.ptr - k.data.ptr == hd * isz):
            nd = _be.cupy_module().ndarray
            buf = nd((B * sb,), dtype=dtype)
            dq, dk, dv = (nd(q.shape, dtype, memptr=buf.data + i * hd * isz, strides=q.strides) for i in range(3))
            return dq, (sb, sh, st), dk, dv, (sb, sh, st)
    dq, dqs = _out_like(q, dtype)
    dk, dks = _out_like(k, dtype)
    return dq, dqs, dk, _out_like(k, dtype)[0], dks


def flash_fwd(q, k, v, scale, causal, mirror=True):
    """-> (o in q's shape and dtype, in q's layout when ``mirror`` (``_out_like``) else contiguous,
    lse float32 (B*H, Tq))."""
    cp = _be.cupy_module()
    Tq, D = q.shape[-2], q.shape[-1]
    Tk = k.shape[-2]
    bht = _bht16 if tiled_f32(q.dtype) else _bht
    q2, H, qs = bht(q)
    k2, _, ks = bht(k)
    v2, _, vs = bht(v)
    BH = q.size // (Tq * D)
    o, os_ = _out_like(q, q.dtype, mirror)
    lse = cp.ndarray((BH, Tq), dtype=cp.float32)
    # strides go as Python ints, which CuPy passes as int64 (no numpy scalar per argument)
    args = (q2, k2, v2, o, lse, cp.int32(H), cp.int32(Tq), cp.int32(Tk), *qs, *ks, *vs,
            cp.float32(scale), cp.int32(bool(causal)), *os_)
    if tensor_cores(q.dtype):
        _flash_tc_fn("flash_fwd_tc", q.dtype, D)(((Tq + _TC_ROWS - 1) // _TC_ROWS, BH), (128,), args)
    elif tiled_f32(q.dtype):
        f, smem = _flash_f32_fn("flash_fwd_f32", D)
        f(((Tq + _TF_ROWS - 1) // _TF_ROWS, BH), (256,), args, shared_mem=smem)
    else:
        _flash_fn("flash_fwd", q.dtype, D)(((Tq + _FL_ROWS - 1) // _FL_ROWS, BH), (_FL_ROWS,), args)
    return o, lse


def flash_bwd(g, q, k, v, scale, causal, o=None, lse=None):
    """-> (dq, dk, dv) in the inputs' shapes and dtype. ``o`` and ``lse``: the forward's output and row
    log-sum-exp, as ``flash_fwd`` returned them; without them the forward is run again."""
    cp = _be.cupy_module()
    Tq, D = q.shape[-2], q.shape[-1]
    Tk = k.shape[-2]
    g = g.astype(q.dtype, copy=False)
    if o is None or lse is None:
        o, lse = flash_fwd(q, k, v, scale, causal, mirror=False)
    o2, _, os_ = _bht(o.astype(q.dtype, copy=False))
    bht = _bht16 if tiled_f32(q.dtype) else _bht
    q2, H, qs = bht(q)
    k2, _, ks = bht(k)
    v2, _, vs = bht(v)
    g2, _, gs = bht(g)
    BH = q.size // (Tq * D)
    delta = cp.ndarray((BH, Tq), dtype=cp.float32)
    rows = BH * Tq
    tc = tensor_cores(q.dtype)
    if tc and (o2.data.ptr % 4 or any(x % 2 for x in os_)):
        o2, _, os_ = _bht(_c(o2))  # the dQ kernel reads O's rows as 32-bit pairs
    if not tc:  # the tensor-core dQ kernel computes delta itself, for the dK/dV kernel after it
        _flash_fn("flash_bwd_delta", q.dtype, D)(((rows * 32 + 255) // 256,), (256,), (
            o2, g2, delta, cp.int32(H), cp.int32(Tq), *gs, rows, *os_))
    # each gradient in its input's layout, so the views the model took of q/k/v (reshape, transpose)
    # map their gradients back without copies
    dq, dqs, dk, dv, dks = _grads_like(q, k, v, q.dtype)
    common = (cp.int32(H), cp.int32(Tq), cp.int32(Tk), *qs, *ks, *vs, *gs,
              cp.float32(scale), cp.int32(bool(causal)))
    dq_args = (q2, k2, v2, g2, lse, delta, dq) + common + dqs
    dkdv_args = (q2, k2, v2, g2, lse, delta, dk, dv) + common + dks
    if tiled_f32(q.dtype):
        f, smem = _flash_f32_fn("flash_bwd_dq_f32", D)
        f(((Tq + _TF_ROWS - 1) // _TF_ROWS, BH), (256,), dq_args, shared_mem=smem)
        f, smem = _flash_f32_fn("flash_bwd_dkdv_f32", D)
        f(((Tk + _TF_ROWS - 1) // _TF_ROWS, BH), (256,), dkdv_args, shared_mem=smem)
        return dq, dk, dv
    fn, rows, threads = (_flash_tc_fn, _TC_ROWS, 128) if tc else (_flash_fn, _FL_ROWS, _FL_ROWS)
    sfx = "_tc" if tc else ""
    if tc:
        dq_args += (o2, *os_)
    fn("flash_bwd_dq" + sfx, q.dtype, D)(((Tq + rows - 1) // rows, BH), (threads,), dq_args)
    fn("flash_bwd_dkdv" + sfx, q.dtype, D)(((Tk + rows - 1) // rows, BH), (threads,), dkdv_args)
    return dq, dk, dv
