"""Mixed precision: ``vt.autocast(device_type="cuda", dtype=vt.bfloat16)`` and GradScaler.

Inside an autocast region the dispatcher casts floating inputs of matrix ops (matmul, linear,
attention, convolution) to the low-precision dtype, and of precision-sensitive ops (softmax,
norms, losses, exp/log, sums) to float32; other ops follow normal type promotion. Casts are
recorded as ``to_dtype`` nodes (made here without the dispatcher's generic work), so gradients flow
back in each input's own dtype; casts of leaf parameters are cached for the region (one cast per
weight per step, as PyTorch). ``linear`` on CUDA is redirected to one ``linear_autocast`` op that
casts its operands inside (no cast nodes: three fewer ops and backward nodes per layer).
"""
from __future__ import annotations

import threading

from .core import autograd as _ag
from .core import backend as _be
from .core import dispatcher as _disp
from .core import dtype as _dt
from .core.grad_mode import _state as _grad_state

LOWER = frozenset("""matmul mm bmm linear addmm baddbmm conv2d scaled_dot_product_attention mv""".split())
FP32 = frozenset("""softmax log_softmax layer_norm rms_norm cross_entropy nll_loss mse_loss
binary_cross_entropy_with_logits exp expm1 log log2 log10 log1p pow reciprocal rsqrt softplus
sum prod cumsum cumprod norm logsumexp var std acos asin cosh sinh tan""".split())

_tls = threading.local()
_TO_DTYPE = _disp.get_op("to_dtype")
_LINEAR = _disp.get_op("linear_autocast")


def _state():
    return getattr(_tls, "stack", None)


class autocast:
    def __init__(self, device_type: str = "cuda", dtype=None, enabled: bool = True, cache_enabled: bool = True):
        if device_type not in ("cuda", "cpu"):
            raise ValueError(f"autocast: device_type must be 'cuda' or 'cpu', got {device_type!r}")
        if dtype is None:
            dtype = _dt.float16 if device_type == "cuda" else _dt.bfloat16
        dtype = _dt.as_dtype(dtype)
        if dtype not in (_dt.float16, _dt.bfloat16):
            raise ValueError(f"autocast: dtype must be float16 or bfloat16, got {dtype.name}")
        self.device_type = device_type
        self.dtype = dtype
        self.enabled = enabled
        self.cache_enabled = cache_enabled

    def __enter__(self):
        global _active
        if not hasattr(_tls, "stack"):
            _tls.stack = []
            _tls.cache = {}
        _tls.stack.append(self if self.enabled else None)
        if self.enabled:
            with _lock:
                _active += 1
                _disp._autocast_hook = _apply
        return self

    def __exit__(self, *exc):
        global _active
        ctx = _tls.stack.pop()
        if not any(_tls.stack):
            _tls.cache = {}
        if ctx is not None:
            with _lock:
                _active -= 1
                if _active == 0:
                    _disp._autocast_hook = None
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with autocast(self.device_type, self.dtype, self.enabled, self.cache_enabled):
                return fn(*a, **k)
        return wrapper


# regions active in any thread: the dispatcher calls the hook only while this is non-zero
_active = 0
_lock = threading.Lock()


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    st = _state()
    return bool(st and st[-1] is not None and st[-1].device_type == device_type)


def get_autocast_dtype(device_type: str = "cuda"):
    st = _state()
    if st and st[-1] is not None and st[-1].device_type == device_type:
        return st[-1].dtype
    return _dt.float16 if device_type == "cuda" else _dt.bfloat16


def _cast(t, target, ctx):
    if not (isinstance(t, _disp._Tensor) and t._dtype.is_floating_point and t._dtype is not target
            and t._dtype is not _dt.float64 and t._device.type == ctx.device_type):
        return t
    cache = _tls.cache if ctx.cache_enabled and t.is_leaf and t.requires_grad else None
    if cache is not None:
        hit = cache.get(id(t))
        if hit is not None and hit[0] is t and hit[1] == t._vc.v:
            return hit[2]
    if t._is_sharded:
        out = _disp.ops.vt.to_dtype(t, target)
    else:  # what dispatching to_dtype does, without its generic work (hundreds of casts a step)
        if t._device.type == "cuda":
            _be.check_cuda_dtype(target, "autocast")
        with _be.device_guard(t._device):  # CuPy allocates on the current device
            out = _disp._Tensor._make(_be.astype(t._data, target.np), t._device)
        if t.requires_grad and _grad_state.enabled:
            _ag.attach(_TO_DTYPE, (t, target), {}, [t], out)
    if cache is not None:
        cache[id(t)] = (t, t._vc.v, out)
    return out


def _linear_in_op(args, ctx):
    """linear(x, w[, b]) of float32/low-precision CUDA tensors on one device, none sharded: the casts can
    happen inside one ``linear_autocast`` op."""
    if len(args) < 2 or len(args) > 3:
        return False
    dev = None
    for a in args:
        if a is None:
            continue
        if not isinstance(a, _disp._Tensor) or a._is_sharded or a._device.type != ctx.device_type:
            return False
        if a._dtype is not _dt.float32 and a._dtype is not ctx.dtype:
            return False
        if dev is None:
            dev = a._device
        elif a._device != dev:
            return False
    return args[1].ndim == 2


def _has_low(args, device_type):
    """Whether a float16/bfloat16 tensor on ``device_type`` is among args (one level of lists)."""
    T = _disp._Tensor
    for a in args:
        if isinstance(a, T):
            if a._dtype._cat == 2 and a._dtype.itemsize == 2 and a._device.type == device_type:
                return True
        elif type(a) in (list, tuple) and _has_low(a, device_type):
            return True
    return False


def _apply(op, args):
    """Called by the dispatcher for every op while some thread has autocast on: (op to run, its args)."""
    st = _state()
    if not st or st[-1] is None:
        return op, args
    ctx = st[-1]
    name = op.name
    if name in LOWER:
        target = ctx.dtype
        if name == "linear" and ctx.device_type == "cuda" and _linear_in_op(args, ctx):
            return _LINEAR, (args[0], args[1], args[2] if len(args) > 2 else None, target)
    elif name in FP32:
        target = _dt.float32
        if not _has_low(args, ctx.device_type):  # the common case: the inputs are float32 already
            return op, args
    else:
        return op, args
    out = []
    for a in args:
        if type(a) in (list, tuple):
            out.append(type(a)(_cast(b, target, ctx) for b in a))
        else:
            out.append(_cast(a, target, ctx))
    return op, tuple(out)


from .cuda.amp_scaler import GradScaler  # noqa: E402,F401
