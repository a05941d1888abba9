"""Local reductions ``dst = op(dst, src) [* scale]``: numpy ufuncs on CPU, one fused CuPy
ElementwiseKernel per (op, scaled) on GPU."""
from __future__ import annotations

import numpy as np

from ...core import backend as _be
from ..types import ReduceOp

_NP = {ReduceOp.SUM: np.add, ReduceOp.AVG: np.add, ReduceOp.PRODUCT: np.multiply, ReduceOp.MIN: np.minimum,
       ReduceOp.MAX: np.maximum}
_CU_EXPR = {ReduceOp.SUM: "x + y", ReduceOp.AVG: "x + y", ReduceOp.PRODUCT: "x * y", ReduceOp.MIN: "(x < y ? x : y)",
            ReduceOp.MAX: "(x < y ? y : x)"}
_kernels: dict = {}


def _cu_kernel(op, scaled):
    k = _kernels.get((op, scaled))
    if k is None:
        cp = _be.cupy_module()
        expr = _CU_EXPR[op]
        body = f"y = (T)((float)({expr}) * s)" if scaled else f"y = {expr}"
        params = "T x, float32 s" if scaled else "T x"
        k = cp.ElementwiseKernel(params, "T y", body, f"vt_reduce_{op.value}{'_scaled' if scaled else ''}")
        _kernels[(op, scaled)] = k
    return k


def reduce_into(dst, src, op, scale=None):
    if dst.size == 0:
        return
    if _be.is_cuda_array(dst):
        if scale is None:
            _cu_kernel(op, False)(src, dst)
        elif dst.dtype == np.float64:
            _cu_kernel(op, False)(src, dst)
            dst *= scale
        else:
            _cu_kernel(op, True)(src, np.float32(scale), dst)
        return
    host_reduce_into(dst, src, op, scale)


def host_reduce_into(dst, src, op, scale=None):
    """numpy arrays only: one ufunc pass with ``out=dst`` (no temporaries)."""
    _NP[op](dst, src, out=dst)
    if scale is not None:
        np.multiply(dst, dst.dtype.type(scale), out=dst)


def scale_inplace(arr, scale):
    if arr.size:
        if _be.is_cuda_array(arr):
            arr *= scale
        else:
            np.multiply(arr, arr.dtype.type(scale), out=arr)
