"""Op registry and dispatcher.

An op is defined once: a backend kernel over arrays (numpy or CuPy, written against ``xp``) and,
beside it, a backward formula written with vt ops. Keys are tried in order
**Autograd -> Sharded -> CPU | CUDA**:

* Autograd: when grad mode is on and an input requires grad, record a Node, then redispatch below.
* Sharded: when an input is a sharded tensor (``_is_sharded``), the Fabric layer's handler applies
  the op's sharding rule (see ``vibetensor.fabric``); registered there, not here.
* CPU / CUDA: unwrap tensors to arrays, promote dtypes, run the kernel, wrap the results.

Defining an op::

    @defop("mul", save=(0, 1), promote="default")
    def mul(a, b):            # arrays in, array (or tuple of arrays) out
        return a * b

    @mul.def_backward
    def _(ctx, g):            # vt ops on Tensors, run under no_grad; one grad per tensor input
        a, b = ctx.saved      # (flattened order), None where no gradient flows
        return g * b, g * a

Every op is reachable as ``vt.ops.<namespace>.<name>``.
"""
from __future__ import annotations

from enum import IntEnum

from ..errors import DeviceMismatchError
from . import backend as _be
from . import dtype as _dt
from .grad_mode import _state as _grad_state


class Key(IntEnum):
    AUTOGRAD = 0
    SHARDED = 1
    CPU = 2
    CUDA = 3


# the keys as module constants for the per-op paths: reading an enum member off its class costs ~65 ns on
# Python 3.11 and ~20 ns on 3.12, a global ~6 ns (a dispatched op reads several)
AUTOGRAD_KEY, SHARDED_KEY, CPU_KEY, CUDA_KEY = Key.AUTOGRAD, Key.SHARDED, Key.CPU, Key.CUDA
_KEY_NAMES = {"autograd": Key.AUTOGRAD, "sharded": Key.SHARDED, "cpu": Key.CPU, "cuda": Key.CUDA}


def as_key(k) -> Key:
    if isinstance(k, Key):
        return k
    hit = _KEY_NAMES.get(str(k).lower())
    if hit is None:
        raise ValueError(f"unknown dispatch key {k!r}; use one of Autograd, Sharded, CPU, CUDA")
    return hit


class OpDef:
    """One registered op: kernels per key plus its backward formula and metadata."""

    __slots__ = ("name", "qualname", "kernels", "backward_fn", "save", "save_out", "promote", "view",
                 "inplace_of", "schema", "doc", "sharding_rule", "raw", "composite", "mixed_cuda", "save_for")

    def __init__(self, qualname, kernel=None, *, save=(), save_out=False, promote=None, view=False, schema=None,
                 raw=False, composite=False, save_for=None):
        self.qualname = qualname
        self.composite = composite  # the kernel takes Tensors and calls vt ops: autograd flows through them
        self.raw = raw              # the kernel takes and returns Tensors (device moves, composites)
        self.name = qualname.split("::")[-1]
        self.kernels: dict = {}
        if kernel is not None:
            self.kernels[Key.CPU] = kernel
            self.kernels[Key.CUDA] = kernel
        self.backward_fn = None
        self.save = tuple(save)
        # {saved arg index: arg indices whose gradients read it}: an argument is saved only when one of those
        # needs a gradient (as PyTorch's codegen does): ``y * 3`` keeps nothing of y alive, and an in-place
        # change of y afterwards is no error. Backward formulas of such ops read ctx.args (TensorMeta if unsaved)
        self.save_for = save_for
        self.save_out = save_out
        self.promote = promote      # None | "default" | "float" (ints -> default float) | "same"
        self.view = view            # output aliases input 0's storage (shares its version counter)
        self.schema = schema
        self.sharding_rule = None   # set by vibetensor.fabric
        # CUDA kernel of two arrays of different float dtypes, computing in the promoted one without a
        # cast launch first; returns None when it does not cover the case (set by vibetensor.cuda.fused)
        self.mixed_cuda = None
        self.doc = getattr(kernel, "__doc__", None)

    def def_backward(self, fn):
        self.backward_fn = fn
        return fn

    def register(self, key, fn):
        self.kernels[as_key(key)] = fn
        return fn

    def __call__(self, *args, **kwargs):
        if kwargs and ("input" in kwargs or "other" in kwargs or "axis" in kwargs):
            args, kwargs = _torch_keywords(self, args, kwargs)
        return dispatch(self, args, kwargs)

    def __repr__(self):
        return f"<op {self.qualname}>"


_KERNEL_PARAMS: dict = {}


def _torch_keywords(op, args, kwargs):
    """PyTorch's keyword spellings of the leading operands and of dims: ``vt.sum(input=x)``,
    ``x.add(other=y)``, ``x.sum(axis=0)`` (kernels name them positionally, and ``dim``)."""
    params = _KERNEL_PARAMS.get(op)
    if params is None:
        import inspect
        k = op.kernels.get(Key.CPU) or next(iter(op.kernels.values()), None)
        try:
            params = _KERNEL_PARAMS[op] = tuple(inspect.signature(k).parameters)
        except (TypeError, ValueError):
            params = _KERNEL_PARAMS[op] = ()
    kwargs = dict(kwargs)
    if "input" in kwargs and "input" not in params and not args:
        args = (kwargs.pop("input"),)
    if "other" in kwargs and "other" not in params and len(args) == 1:
        args = args + (kwargs.pop("other"),)
    if "axis" in kwargs and "axis" not in params and "dim" in params:
        if "dim" in kwargs:
            raise TypeError(f"{op.name}(): got both dim= and its alias axis=; pass one")
        kwargs["dim"] = kwargs.pop("axis")
    return args, kwargs


REGISTRY: dict[str, OpDef] = {}


class _Namespace:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, item):
        op = REGISTRY.get(f"{self._name}::{item}")
        if op is None:
            raise AttributeError(f"no op '{self._name}::{item}' is registered")
        self.__dict__[item] = op  # later lookups are plain attribute hits (hot path)
        return op

    def _forget(self, item):
        self.__dict__.pop(item, None)

    def __dir__(self):
        p = self._name + "::"
        return [k[len(p):] for k in REGISTRY if k.startswith(p)]


class _Ops:
    """``vt.ops.vt.add`` -- every registered op by namespace."""

    def __init__(self):
        self._ns: dict = {}

    def __getattr__(self, ns):
        if ns.startswith("_"):
            raise AttributeError(ns)
        n = self._ns.get(ns)
        if n is None:
            n = self._ns[ns] = _Namespace(ns)
        return n


ops = _Ops()


def defop(name, *, namespace="vt", save=(), save_out=False, promote=None, view=False, schema=None, raw=False,
          composite=False, save_for=None):
    """Decorator registering a kernel (for CPU and CUDA) as op ``namespace::name``.

    ``raw=True``: the kernel receives Tensors rather than arrays (ops that cross devices); it still
    needs a backward. ``composite=True``: the kernel receives Tensors and is built from other vt ops,
    so it needs no backward of its own (autograd and sharding flow through the ops it calls); a
    CUDA kernel registered later for it (a fused version) takes arrays as usual."""
    def deco(kernel):
        qual = f"{namespace}::{name}"
        if qual in REGISTRY:
            raise ValueError(f"op {qual} is already defined")
        op = OpDef(qual, kernel, save=save, save_out=save_out, promote=promote, view=view, schema=schema, raw=raw,
                   composite=composite, save_for=save_for)
        REGISTRY[qual] = op
        return op
    return deco


def get_op(qualname: str) -> OpDef:
    if "::" not in qualname:
        qualname = "vt::" + qualname
    op = REGISTRY.get(qualname)
    if op is None:
        raise KeyError(f"no op '{qualname}' is registered")
    return op


# ---------------------------------------------------------------------------------------------
# dispatch

_Tensor = None  # set by tensor.py (avoids an import cycle)
_autograd_record = None  # set by autograd.py
_autograd_attach_view = None  # set by autograd.py
_sharded_handler = None  # set by vibetensor.fabric when imported
_autocast_hook = None  # set by vibetensor.amp while an autocast region is active


_SEQ = (list, tuple)


class Keep:
    """What a kernel returns when its backward formula can reuse arrays the forward made. ``out`` is the
    result. ``saved`` maps an argument index (one the op saves) to an array saved in that argument's place:
    the float16 copy an autocast linear cast anyway, instead of the float32 original. ``extra`` is
    anything else, kept as ``ctx.kept`` (attention's row log-sum-exp). ``save_out``: the node saves
    the output too (``ctx.out``, version-checked), for this call only. Outside autograd recording the
    dispatcher drops all of it at once."""

    __slots__ = ("out", "saved", "extra", "save_out")

    def __init__(self, out, saved=None, extra=None, save_out=False):
        self.out, self.saved, self.extra, self.save_out = out, saved, extra, save_out


def _scan(args):
    """The tensor arguments, in flattened order (one level of lists/tuples)."""
    T = _Tensor
    tensors = []
    for a in args:
        if isinstance(a, T):
            tensors.append(a)
        elif type(a) in _SEQ:
            for b in a:
                if isinstance(b, T):
                    tensors.append(b)
    return tensors


def dispatch(op: OpDef, args, kwargs):
    if _autocast_hook is not None:
        op, args = _autocast_hook(op, args)
    if op.composite:
        return _composite(op, args, kwargs)
    tensors = _scan(args)
    grad = sharded = False  # whether any input needs the Autograd or the Sharded key
    for t in tensors:
        if t.requires_grad:
            grad = True
        if t._is_sharded:
            sharded = True
    if grad and _grad_state.enabled and (op.backward_fn is not None or AUTOGRAD_KEY in op.kernels):
        k = op.kernels.get(AUTOGRAD_KEY)
        if k is not None:
            return k(*args, **kwargs)
        return _autograd_record(op, args, kwargs, tensors, sharded)
    if sharded:
        return dispatch_below_autograd(op, args, kwargs, tensors)
    return run_backend(op, args, kwargs, tensors)


def call_view(op, t, args):
    """``dispatch(op, (t, *args), {})`` for a view op (``op.view``) of one tensor and plain arguments,
    without the general path's bookkeeping: the same kernel and the same autograd node, about a third
    of the host time (a training step makes hundreds of reshapes and transposes). Tensor methods and
    backward formulas call it; anything unusual (an autocast rule for the op, sharding, an Autograd
    kernel, a tensor among the arguments) takes the general path."""
    if t._is_sharded or AUTOGRAD_KEY in op.kernels:
        return dispatch(op, (t,) + args, {})
    if _autocast_hook is not None:  # autocast regions cover whole forwards: ask whether it acts here
        full = (t,) + args
        op2, full2 = _autocast_hook(op, full)
        if op2 is not op or full2 is not full:
            return dispatch(op, full, {})
    T = _Tensor
    for a in args:
        if isinstance(a, T):
            return dispatch(op, (t,) + args, {})
    dev = t._device
    if dev.type != "cuda":
        arr = op.kernels[CPU_KEY](t._data, *args)
    elif _be._single_cuda:  # one GPU: device_guard would return a null context (two Python calls per op)
        arr = op.kernels[CUDA_KEY](t._data, *args)
    else:
        with _be.device_guard(dev):
            arr = op.kernels[CUDA_KEY](t._data, *args)
    out = T._make(arr, dev, False, t._vc, t if t._base is None else t._base)
    if t.requires_grad and _grad_state.enabled and op.backward_fn is not None:
        _autograd_attach_view(op, t, args, out)
    return out


def call_binary(op, a, b):
    """``dispatch(op, (a, b), {})`` for a Tensor operator (``a + b``, ``a * b``, ``a @ b``; ``op`` neither
    composite nor raw) on two CPU float32/float64 tensors of one dtype that record nothing: the op's CPU
    kernel on the two arrays, without the general path's scans. Evaluation loops, metrics and optimizer
    math make many such calls. Anything else (grad, autocast, other dtypes or devices, sharding, a
    Python scalar) goes through ``dispatch``."""
    if (not (_grad_state.enabled and (a.requires_grad or getattr(b, "requires_grad", False)))
            and isinstance(b, _Tensor) and _autocast_hook is None and a._device is b._device
            and a._dtype is b._dtype and (a._dtype is _dt.float32 or a._dtype is _dt.float64)
            and a._device.type == "cpu" and not (a._is_sharded or b._is_sharded)):
        out = op.kernels[CPU_KEY](a._data, b._data)
        return _Tensor._make(out.out if type(out) is Keep else out, a._device)
    return dispatch(op, (a, b), {})


def _composite(op, args, kwargs):
    cuda_fused = op.kernels.get(CUDA_KEY)
    if cuda_fused is not None and cuda_fused is not op.kernels.get(CPU_KEY):
        tensors = _scan(args)  # a fused CUDA kernel exists: it runs where no autograd or sharding is needed
        if (tensors and tensors[0]._device.type == "cuda"
                and not (_grad_state.enabled and any(t.requires_grad for t in tensors))
                and not any(t._is_sharded for t in tensors)):
            return run_backend(op, args, kwargs, tensors)
    return op.kernels[CPU_KEY](*args, **kwargs)


def dispatch_below_autograd(op, args, kwargs, tensors=None):
    if tensors is None:
        tensors = _scan(args)
    for t in tensors:
        if t._is_sharded:
            _grad_state.recording = None  # per-shard kernels: a Keep would describe one shard only
            k = op.kernels.get(SHARDED_KEY)
            if k is not None:
                return k(*args, **kwargs)
            if _sharded_handler is None:
                raise RuntimeError(f"{op.qualname}: sharded tensors need vibetensor.fabric (import it)")
            return _sharded_handler(op, args, kwargs)
    return run_backend(op, args, kwargs, tensors)


def _common_device(op, tensors):
    dev = tensors[0]._device
    for t in tensors[1:]:
        d = t._device
        if d is not dev and d != dev:  # devices are interned: identity is the fast path
            # PyTorch lets a 0-dim CPU tensor join a CUDA op as a scalar
            if d.type == "cpu" and t.ndim == 0 and dev.type == "cuda":
                continue
            if dev.type == "cpu" and dev.index is None and tensors[0].ndim == 0 and d.type == "cuda":
                dev = d
                continue
            devs = ", ".join(sorted({str(x._device) for x in tensors}))
            raise DeviceMismatchError(
                f"{op.name}: expected all tensors on one device, got {devs}; move them with .to(device) first")
    return dev


def _promoted(op, args, tensors):
    """The op's computation dtype (PyTorch promotion), with a fast path for same-dtype tensors."""
    d0 = tensors[0]._dtype
    same = True
    for a in args:
        if isinstance(a, _Tensor):
            if a._dtype is not d0:
                same = False
                break
        elif type(a) in (int, float, bool):
            same = False
            break
    if same:
        cast = d0
    else:
        cast = _dt.result_type(*[a for a in args if isinstance(a, (_Tensor, bool, int, float))] or tensors)
    if op.promote == "float" and not cast.is_floating_point:
        cast = _dt.get_default_dtype()
    return cast


def _unwrap(a, dev, cast):
    T = _Tensor
    if isinstance(a, T):
        d = a._data
        if a._device is not dev and a._device != dev:  # a 0-dim tensor used as a scalar
            return a.item()
        if cast is not None and a._dtype is not cast:
            d = _be.astype(d, cast.np)
        return d
    if type(a) in (list, tuple):
        for b in a:  # shapes and dims (plain ints, nothing to cast) pass through untouched
            if isinstance(b, T) or (cast is not None and type(b) is int) or type(b) in (list, tuple):
                return type(a)(_unwrap(b, dev, cast) for b in a)
        return a
    if type(a) is int and cast is not None and cast._cat == 1 and not -128 <= a <= 127:
        import numpy as np  # wrap out-of-range Python ints as PyTorch does (int8 + 1000)
        return np.array(a).astype(cast.np)[()]
    return a


def run_backend(op, args, kwargs, tensors=None):
    if tensors is None:
        tensors = _scan(args)
    if not tensors:
        raise TypeError(f"{op.name}: expected at least one tensor argument")
    if op.raw:
        return op.kernels[CUDA_KEY if tensors[0]._device.type == "cuda" else CPU_KEY](*args, **kwargs)
    arrs, dev, cast = _fast_args(op, args, tensors)
    if arrs is None:  # mixed devices or dtypes, containers to promote: the general path
        dev = _common_device(op, tensors) if len(tensors) > 1 else tensors[0]._device
        cast = None if op.promote is None else _promoted(op, args, tensors)
        if op.mixed_cuda is not None and dev.type == "cuda" and len(args) == 2 and len(tensors) == 2:
            a, b = tensors
            if a._device is b._device and cast._cat == 2:
                with _be.device_guard(dev):
                    out = op.mixed_cuda(a._data, b._data, **kwargs)
                if out is not None:
                    return _wrap1(op, out, dev, tensors)
        arrs = [_unwrap(a, dev, cast) for a in args]
    key = CUDA_KEY if dev.type == "cuda" else CPU_KEY
    kernel = op.kernels.get(key)
    if kernel is None:
        raise NotImplementedError(f"{op.qualname} has no {key.name} kernel")
    if key is CUDA_KEY and not _be._single_cuda:
        with _be.device_guard(dev):
            out = kernel(*arrs, **kwargs)
    else:  # CPU, or the one GPU (where device_guard is a null context)
        out = kernel(*arrs, **kwargs)
    if type(out) is Keep:
        if _grad_state.recording is op:
            _grad_state.kept = out
        out = out.out
    od = getattr(out, "dtype", None)
    if od is not None:
        if cast is not None and cast._cat == 2:
            if od is not cast.np and od != cast.np and od.kind in "fV":
                out = out.astype(cast.np)  # numpy lifts e.g. bfloat16 + 0.5 to float32; PyTorch keeps bfloat16
        elif (cast is None or cast is _dt.bfloat16) and od == _F32 and (
                len(tensors) > 1 or tensors[0]._dtype is _dt.bfloat16) and _bf16_lifted(tensors, args, kwargs):
            out = out.astype(_dt.bfloat16.np)
        return _wrap1(op, out, dev, tensors)
    return _wrap_out(op, out, dev, tensors)


def _fast_args(op, args, tensors):
    """(arrays, device, cast) when every tensor argument shares the first one's device (and, for a
    promoting op, its dtype) and no Python scalar changes the result dtype -- the common case, decided
    in one pass; (None, None, None) sends the call down the general path."""
    T = _Tensor
    t0 = tensors[0]
    dev = t0._device
    promote = op.promote
    d0 = t0._dtype
    if promote is not None:
        cat = d0._cat
        if promote == "float" and cat != 2:
            return None, None, None
    for t in tensors:  # those inside lists too
        if t._device is not dev:
            return None, None, None
    arrs = []
    for a in args:
        if isinstance(a, T):
            if promote is not None and a._dtype is not d0:
                return None, None, None
            arrs.append(a._data)
            continue
        ta = type(a)
        if promote is not None:
            # PyTorch: a Python scalar never lifts a tensor of its own or a higher category
            if ta is float:
                if cat != 2:
                    return None, None, None
            elif ta is int:
                if not (cat == 2 or (cat == 1 and -128 <= a <= 127)):
                    return None, None, None
            elif ta in _SEQ:
                return None, None, None
        elif ta in _SEQ:
            a = _unwrap(a, dev, None)
        arrs.append(a)
    return arrs, dev, (None if promote is None else d0)


_F32 = _dt.float32.np


def _bf16_lifted(tensors, args, kwargs):
    """numpy/CuPy compute bfloat16 mixed with Python scalars in float32: a bfloat16-only op whose
    result came back float32 (and that was not asked for a dtype) is returned in bfloat16."""
    seen = False
    for t in tensors:
        d = t._dtype
        if d is _dt.bfloat16:
            seen = True
        elif d._cat == 2:
            return False
    if not seen:
        return False
    return not any(isinstance(a, _dt.dtype) for a in args) and not any(isinstance(v, _dt.dtype) for v in kwargs.values())


def _wrap_out(op, out, dev, tensors):
    if isinstance(out, tuple):
        if hasattr(out, "_fields"):  # a named tuple (values, indices) keeps its type
            return type(out)(*(_wrap1(op, o, dev, tensors) for o in out))
        return tuple(_wrap1(op, o, dev, tensors) for o in out)
    if type(out) is list:
        return [_wrap1(op, o, dev, tensors) for o in out]
    return _wrap1(op, out, dev, tensors)


def _wrap1(op, o, dev, tensors):
    if o is None or type(o) in (int, float, bool):
        return o
    t = _Tensor._make(o, dev)
    if op.view:
        src = tensors[0]
        t._vc = src._vc
        t._base = src if src._base is None else src._base
    return t
