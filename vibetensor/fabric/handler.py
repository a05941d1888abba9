"""The Sharded dispatch key: apply an op's sharding rule, run it shard by shard, wrap the results.

A rule (``@rule("name", ...)``, or ``OpDef.sharding_rule``) looks at the DTensor inputs' placements
and returns a :class:`Plan`: the placements each input must have (inputs are redistributed to
them), the output placements, and optionally a per-shard rewrite of the arguments. An op without a
rule -- or whose rule declines -- replicates its inputs, runs once on the mesh's first device,
broadcasts the result (Replicate) and records a FABRIC_FALLBACK event and counters: never silently.
Plain tensors mixed with DTensors join as Replicate.
"""
from __future__ import annotations

import inspect

from ..core import dispatcher as _disp
from ..core.dispatcher import Key
from ..core.grad_mode import no_grad, is_grad_enabled
from ..core.tensor import Tensor
from ..errors import AutogradError, DeviceMismatchError
from .. import observe as _obs
from . import layout, multidev
from .dtensor import DTensor
from .spec import Replicate

RULES: dict = {}
DERIVED: list = []   # (predicate(op name), rule): rules for families of ops (e.g. activation backwards)


class Decline(Exception):
    """Raised by a rule that cannot shard this call; the message becomes the fallback reason."""


class Plan:
    __slots__ = ("inputs", "outputs", "local", "run")

    def __init__(self, inputs, outputs, local=None, run=None):
        self.inputs = [tuple(p) for p in inputs]   # placements per DTensor input (flattened order)
        self.outputs = outputs                     # placements tuple, or a list per output
        self.local = local                         # local(k, coords, bound_args) -> None (edits in place)
        self.run = run                             # run(k, coords, bound_args) -> result (replaces the op)


def rule(*names):
    """Register a sharding rule ``fn(call) -> Plan`` for ops named ``names`` (now or when they appear)."""
    def deco(fn):
        for n in names:
            RULES[n] = fn
            op = _disp.REGISTRY.get(f"vt::{n}")
            if op is not None:
                op.sharding_rule = fn
        return fn
    return deco


class Call:
    """One op call on DTensors: the op, its arguments and the DTensor inputs in flattened order."""

    def __init__(self, op, args, kwargs, mesh, dts):
        self.op, self.args, self.kwargs, self.mesh, self.dts = op, args, kwargs, mesh, dts
        self._b = None

    @property
    def name(self):
        return self.op.name

    @property
    def bound(self):
        """Arguments by parameter name (defaults applied)."""
        if self._b is None:
            self._b = bind(self.op, self.args, self.kwargs)
        return self._b

    def arg(self, name, default=None):
        try:
            return self.bound.arguments.get(name, default)
        except TypeError:
            return default

    def roles(self):
        """The parameter name of each DTensor input, in ``dts`` order (the same tensor may appear under
        several names, e.g. attention(x, x, x))."""
        sig = _SIGS.get(self.op.qualname) or (bind(self.op, self.args, self.kwargs) and _SIGS[self.op.qualname])
        params = list(sig.parameters.values())
        names = []

        def walk(x, name):
            if isinstance(x, DTensor):
                names.append(name)
            elif type(x) in (list, tuple):
                for y in x:
                    walk(y, name)
        for i, a in enumerate(self.args):
            p = params[min(i, len(params) - 1)] if params else None
            walk(a, p.name if p is not None else str(i))
        for k, v in self.kwargs.items():
            walk(v, k)
        return names

    def placements(self, m):
        return [d._placements[m] for d in self.dts]


_SIGS: dict = {}


def bind(op, args, kwargs):
    sig = _SIGS.get(op.qualname)
    if sig is None:
        fn = op.kernels.get(Key.CPU) or next(iter(op.kernels.values()))
        sig = _SIGS[op.qualname] = inspect.signature(fn)
    b = sig.bind(*args, **kwargs)
    b.apply_defaults()
    return b


# ---------------------------------------------------------------------------------------------
# walking arguments

def _walk(x, fn):
    if isinstance(x, Tensor):
        return fn(x)
    if type(x) in (list, tuple):
        return type(x)(_walk(y, fn) for y in x)
    if type(x) is dict:
        return {k: _walk(v, fn) for k, v in x.items()}
    return x


def _dtensors(args, kwargs):
    out = []

    def f(t):
        if isinstance(t, DTensor):
            out.append(t)
        return t
    _walk(args, f)
    _walk(kwargs, f)
    return out


def _lift(op, mesh, args, kwargs):
    """Plain tensors -> Replicate DTensors on ``mesh`` (they take part as full copies)."""
    def f(t):
        if isinstance(t, DTensor):
            return t
        if t.requires_grad:
            raise ValueError(f"{op.name}: a plain tensor that requires grad (shape {tuple(t.shape)}) is mixed with "
                             f"DTensors on {mesh}; its gradient would come back sharded. Distribute it first: "
                             f"vt.fabric.distribute_tensor(t, mesh, [Replicate()] * {mesh.ndim})")
        if t._device.type != mesh.device_type:
            raise DeviceMismatchError(f"{op.name}: a DTensor on {mesh} is mixed with a plain tensor on {t._device}; "
                                      f"move the tensor to a {mesh.device_type} device or distribute it")
        with no_grad():
            locs = layout.split(t, mesh, (Replicate(),) * mesh.ndim, why=f"{op.name}: replicate plain tensor")
        return DTensor._new(locs, mesh, (Replicate(),) * mesh.ndim, tuple(t.shape), t._dtype)
    return _walk(args, f), _walk(kwargs, f)


# ---------------------------------------------------------------------------------------------
# the handler

def handle(op, args, kwargs):
    dts = _dtensors(args, kwargs)
    mesh = dts[0]._mesh
    for d in dts[1:]:
        if d._mesh != mesh:
            raise ValueError(f"{op.name}: DTensors on different meshes ({mesh} and {d._mesh}); redistribute them "
                             f"onto one mesh first")
    if len(dts) != _count_tensors(args, kwargs):
        args, kwargs = _lift(op, mesh, args, kwargs)
        dts = _dtensors(args, kwargs)
    call = Call(op, args, kwargs, mesh, dts)
    _obs.counter_add("fabric.ops.attempted")
    fn = op.sharding_rule or RULES.get(op.name) or _derived(op.name)
    reason = f"no sharding rule for {op.name}"
    plan = None
    if fn is not None:
        try:
            plan = fn(call)
        except Decline as e:
            reason = f"{op.name}: {e}"
        except Exception as e:  # noqa: BLE001 - e.g. arguments the rule did not expect: the replicated
            # fallback runs the op on whole tensors, where the kernel gives its own error for bad input
            reason = f"{op.name}: sharding rule failed ({type(e).__name__}: {e})"
    if plan is None:
        return _fallback(call, reason)
    _obs.counter_add("fabric.ops.hit")
    out = _execute(call, plan)
    if _obs.enabled():
        _obs.record(_obs.EventKind.FABRIC_OP, op.name, extra={
            "inputs": [str(list(p)) for p in plan.inputs], "outputs": str(plan.outputs)})
    return out


def _derived(name):
    for pred, fn in DERIVED:
        if pred(name):
            RULES[name] = fn
            return fn
    return None


def _count_tensors(args, kwargs):
    n = [0]

    def f(t):
        n[0] += 1
        return t
    _walk(args, f)
    _walk(kwargs, f)
    return n[0]


def _per_shard_args(call, locals_by_dt, k):
    it = iter(range(len(call.dts)))

    def f(t):
        return locals_by_dt[next(it)][k]
    return _walk(call.args, f), _walk(call.kwargs, f)


def _execute(call, plan):
    mesh = call.mesh
    locals_by_dt = []
    for d, want in zip(call.dts, plan.inputs):
        locals_by_dt.append(layout.redistribute_locals(d._local, d._meta.shape, mesh, d._placements, want))
    outs = []
    for j, k in enumerate(mesh.local_indices()):  # every position, or this process's one
        dev = mesh.devices[k]
        a, kw = _per_shard_args(call, locals_by_dt, j)
        b = None
        if plan.local is not None or plan.run is not None:
            b = bind(call.op, a, kw)
        if plan.local is not None:
            plan.local(k, mesh.coords(k), b)
            a, kw = b.args, b.kwargs
        try:
            with multidev.on(dev):
                outs.append(plan.run(k, mesh.coords(k), b) if plan.run is not None else call.op(*a, **kw))
        except (ValueError, TypeError, IndexError, RuntimeError) as e:
            raise _in_context(e, call, k, dev) from e
    return _wrap(call, outs, plan.outputs)


def _in_context(e, call, k, dev):
    """The kernel's error, saying it came from one shard (its shapes are local, not global)."""
    where = ", ".join(f"{tuple(d.shape)} {list(d._placements)}" for d in call.dts)
    msg = f"{e} [in {call.name} on shard {k} ({dev}) of DTensors with global shapes/placements: {where}]"
    try:
        return type(e)(msg)
    except Exception:  # noqa: BLE001 - an exception type with another constructor
        return e


def _wrap(call, outs, placements):
    first = outs[0]
    if isinstance(first, Tensor):
        return _wrap1(call, outs, placements)
    if isinstance(first, (tuple, list)):
        pls = placements if isinstance(placements, list) else [placements] * len(first)
        items = [(_wrap1(call, [o[i] for o in outs], pls[i]) if isinstance(first[i], Tensor) else first[i])
                 for i in range(len(first))]
        if hasattr(first, "_fields"):
            return type(first)(*items)
        return type(first)(items)
    return first


def _wrap1(call, locs, placements):
    mesh = call.mesh
    out = DTensor._from_locals(locs, mesh, placements)
    for k, t in zip(mesh.local_indices(), locs):
        want = layout.local_shape(out._meta.shape, mesh, placements, mesh.coords(k))
        if tuple(t.shape) != want:
            raise RuntimeError(f"{call.name}: the sharding rule produced shard {k} of shape {tuple(t.shape)}, but "
                               f"{list(placements)} of global shape {out._meta.shape} needs {want} (a bug in the "
                               f"rule; please report it)")
    return out


def _fallback(call, reason):
    mesh = call.mesh
    _obs.counter_add("fabric.ops.fallback")
    _obs.counter_add(f"fabric.fallback_reason.{reason[:160]}")
    if _obs.enabled():
        _obs.record(_obs.EventKind.FABRIC_FALLBACK, call.name, extra={
            "reason": reason, "placements": [str(list(d._placements)) for d in call.dts]})
    rep = (Replicate(),) * mesh.ndim
    locals_by_dt = [layout.redistribute_locals(d._local, d._meta.shape, mesh, d._placements, rep) for d in call.dts]
    a, kw = _per_shard_args(call, locals_by_dt, 0)
    with multidev.on(mesh.devices[0]):
        res = call.op(*a, **kw)  # once (random ops stay consistent), then broadcast

    def bcast(t):
        if mesh.is_multi_process:  # every rank ran it; position 0's result wins (random ops agree)
            from . import mp
            t = mp.broadcast(t, mesh)
            return DTensor._new([t], mesh, rep, tuple(t.shape), t._dtype)
        locs = [t] + [layout.move(t, dev, f"{call.name}: fallback broadcast") for dev in mesh.devices[1:]]
        return DTensor._new(locs, mesh, rep, tuple(t.shape), t._dtype)
    if isinstance(res, Tensor):
        return bcast(res)
    if isinstance(res, (tuple, list)):
        items = [bcast(x) if isinstance(x, Tensor) else x for x in res]
        return type(res)(*items) if hasattr(res, "_fields") else type(res)(items)
    return res


_disp._sharded_handler = handle


# ---------------------------------------------------------------------------------------------
# in-place ops on DTensors: computed out of place, laid out like the target, written shard by shard

_INIT = {"normal", "uniform", "exponential", "random", "bernoulli"}


def inplace(t: DTensor, name: str, args, kwargs):
    from ..core.tensor import V
    if is_grad_enabled() and (t.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args)):
        raise AutogradError(f"{name}_ on a DTensor while autograd records is not supported; wrap it in "
                            f"`with vt.no_grad():` or use the out-of-place op")
    with no_grad():
        if name == "zero":
            for x in t._local:
                x._data[...] = 0
        elif name == "fill":
            v = args[0] if args else kwargs["value"]
            v = v.item() if isinstance(v, Tensor) else v
            for x in t._local:
                x._data[...] = v
            _zero_partials(t)
        elif name in _INIT:
            from ..core import factories
            full = factories.empty(t.shape, dtype=t.dtype, device=t._mesh.devices[0])
            getattr(full, name + "_")(*args, **kwargs)
            if t._mesh.is_multi_process:
                from . import mp
                full = mp.broadcast(full, t._mesh)
            _write(t, layout.split(full, t._mesh, t._placements, why=f"{name}_"))
        else:
            if name == "copy":
                src = args[0]
                res = src if isinstance(src, DTensor) else None
                if res is None:
                    src = src.to(t._mesh.devices[0]) if src._device != t._mesh.devices[0] else src
                    res = DTensor._new(layout.split(V.expand(src, tuple(t.shape)).contiguous(), t._mesh,
                                                   t._placements), t._mesh, t._placements, t.shape, src._dtype)
            else:
                res = getattr(V, name)(t, *args, **kwargs)
            if not isinstance(res, DTensor):
                raise TypeError(f"{name}_: expected a DTensor result")
            if tuple(res.shape) != tuple(t.shape):
                raise ValueError(f"{name}_: the result has shape {tuple(res.shape)}, the tensor {tuple(t.shape)}; "
                                 f"in-place ops cannot change the shape")
            if res._placements != t._placements:
                res = res.redistribute(t._mesh, t._placements)
            _write(t, res._local)
    t._vc.v += 1
    return t


def _write(t, locs):
    from ..core import backend as _be
    for x, r in zip(t._local, locs):
        with _be.device_guard(x._device):
            x._data[...] = r._data.astype(x._data.dtype, copy=False)
        x._vc.v += 1


def _zero_partials(t):
    """fill_ on a Partial(sum) layout: only the first position along that axis keeps the value."""
    from .spec import Partial, ReduceOp
    for m, p in enumerate(t._placements):
        if isinstance(p, Partial) and p.reduce_op is ReduceOp.SUM:
            for k, x in zip(t._mesh.local_indices(), t._local):
                if t._mesh.coords(k)[m] != 0:
                    x._data[...] = 0
