"""Reverse-mode autograd: graph nodes, the topological engine, hooks, grad(), Function.

Each differentiable op call records one Node holding its backward formula, the inputs' edges and
what the formula needs (saved tensors as detached aliases, plus their versions). The engine runs
nodes in reverse creation order (like PyTorch: latest first) once all their gradients arrived,
which also makes data-parallel buckets fill in reverse-layer order.
"""
from __future__ import annotations

import heapq
import itertools
from types import MappingProxyType

from . import dispatcher as _disp
from .grad_mode import no_grad, _state as _grad_state
from ..errors import AutogradError

_seq = itertools.count()
_hid = itertools.count()


class RemovableHandle:
    def __init__(self, store: dict):
        self.id = next(_hid)
        self._store = store

    def remove(self):
        self._store.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *e):
        self.remove()


class TensorMeta:
    """What backward may need of an unsaved input: its shape, dtype, device."""

    __slots__ = ("shape", "dtype", "device")

    def __init__(self, t):
        self.shape = t._data.shape  # numpy and CuPy both give a tuple
        self.dtype = t._dtype
        self.device = t._device

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"TensorMeta(shape={self.shape}, dtype={self.dtype.name}, device={self.device})"


class Ctx:
    """Backward context: ``args`` (tensors replaced by saved aliases or TensorMeta), ``kwargs``,
    ``saved`` (the saved tensors, in arg order, then ``out`` if the op saves its output)."""

    __slots__ = ("args", "kwargs", "_saved", "_versions", "needs_input_grad", "op_name", "__dict__")
    # rarely set (a node is made per op call: every attribute set costs): set in the instance when they differ
    out = None
    kept = None

    @property
    def freed(self):
        """Backward ran and dropped what this node saved (``_free`` sets ``_versions`` to None)."""
        return self._versions is None

    @property
    def saved(self):
        if self._versions is None:
            raise AutogradError(
                f"Trying to backward through the graph a second time (or access saved tensors after they were "
                f"freed) at {self.op_name}. Saved intermediate values are freed after .backward(); pass "
                f"retain_graph=True to the first backward if you need to backward twice.")
        for t, v in self._versions:
            if t._vc.v != v:
                raise AutogradError(
                    f"one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: a tensor of shape {tuple(t.shape)} saved by {self.op_name} is at version "
                    f"{t._vc.v}; expected version {v} instead. Clone it before modifying it in place.")
        return self._saved

    def save_for_backward(self, *tensors):
        self._saved = tuple(_alias(t) if t is not None else None for t in tensors)
        self._versions = [(t, t._vc.v) for t in tensors if t is not None]

    @property
    def saved_tensors(self):
        return self.saved


def _alias(t):
    a = t.detach()
    return a


class Node:
    """One recorded op. ``next`` holds, per tensor input (flattened), (node, output_nr) or None."""

    __slots__ = ("op", "ctx", "next", "seq", "pre_hooks", "n_out", "__weakref__")

    def __init__(self, op, ctx, next_edges, n_out):
        self.op = op
        self.ctx = ctx
        self.next = next_edges
        self.seq = next(_seq)
        self.pre_hooks = None
        self.n_out = n_out

    def name(self):
        return f"{self.op.name.capitalize()}Backward"

    def add_pre_hook(self, idx, fn, retains=False):
        if self.pre_hooks is None:
            self.pre_hooks = {}
        h = RemovableHandle(self.pre_hooks)
        self.pre_hooks[h.id] = (idx, fn, retains)
        return h

    def apply(self, grads):
        """The backward formula on ``grads`` (the engine runs it with grad mode off)."""
        self.ctx.saved  # raises if freed (backward twice) or a saved tensor was modified in place
        out = self.op.backward_fn(self.ctx, *grads)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return out

    @property
    def next_functions(self):
        return tuple(self.next)

    def __repr__(self):
        return f"<{self.name()}>"


class AccumulateGrad:
    """Sink node of a leaf: runs its hooks, accumulates into ``.grad``, then post-accumulate hooks."""

    __slots__ = ("variable", "seq", "pre_hooks", "next", "n_out", "__weakref__")

    def __init__(self, t):
        import weakref
        self.variable = weakref.ref(t)
        self.seq = 1 << 62  # popped first once ready: leaves accumulate (and DDP hooks fire) during backward
        self.pre_hooks = None
        self.next = ()
        self.n_out = 1

    def name(self):
        return "AccumulateGrad"

    add_pre_hook = Node.add_pre_hook

    def accumulate(self, g, shared=False):
        """``shared``: g is also held elsewhere (the engine handed one tensor to several edges), so it is
        copied before becoming ``.grad`` -- in-place changes to ``.grad`` (accumulation, DDP hooks) must
        not reach another path's gradient."""
        t = self.variable()
        if t is None:
            return
        cur = t._grad
        if cur is None:
            t.grad = g if (g._base is None and not shared) else g.clone()
        elif (cur._dtype is g._dtype and cur._data.shape == g._data.shape and not cur._is_sharded
              and not g._is_sharded and cur._device == g._device):
            # in place, as PyTorch: grad buffers keep their address (fused optimizers, CUDA graphs)
            cur._data += g._data
            cur._vc.v += 1
        else:
            with no_grad():
                t.grad = cur + g
        if t._post_hooks:
            for h in list(t._post_hooks.values()):
                h(t)

    def __repr__(self):
        return "<AccumulateGrad>"


def _accumulate_node(t):
    n = t._accum
    if n is None:
        n = t._accum = AccumulateGrad(t)
    return n


def _edge(t):
    if not t.requires_grad:
        return None
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr)
    return (_accumulate_node(t), 0)


def record(op, args, kwargs, tensors, sharded=True):
    """Autograd key: compute below, then record a Node on the outputs. ``sharded=False``: the caller
    saw no sharded input, so the backend runs directly."""
    if op.backward_fn is None:
        raise NotImplementedError(f"{op.qualname} has no backward formula; call it under vt.no_grad() or on "
                                  f"tensors that do not require grad")
    st = _grad_state
    prev = st.enabled
    st.enabled = False
    st.recording = op
    try:
        if sharded:
            out = _disp.dispatch_below_autograd(op, args, kwargs, tensors)
        else:
            out = _disp.run_backend(op, args, kwargs, tensors)
    finally:
        st.enabled = prev
        st.recording = None
        kept = st.kept
        st.kept = None
    return attach(op, args, kwargs, tensors, out, kept)


def attach(op, args, kwargs, tensors, out, kept=None):
    """Record ``op``'s node on ``out``, already computed from ``args`` (also used directly by paths that
    compute an op's result without the dispatcher, e.g. autocast's casts). ``kept``: the forward
    kernel's ``dispatcher.Keep`` (arrays saved in place of arguments, and ``ctx.kept``)."""
    ctx = Ctx()
    ctx.op_name = op.name
    ctx.kwargs = kwargs if kwargs else _NO_KWARGS
    repl = None
    if kept is not None:
        repl = kept.saved
        ctx.kept = kept.extra
    needs, edges = [], []  # one pass over the inputs: what each needs, where its gradient goes
    for t in tensors:
        if t.requires_grad:
            needs.append(True)
            gf = t.grad_fn
            edges.append((gf, t._output_nr) if gf is not None else (_accumulate_node(t), 0))
        else:
            needs.append(False)
            edges.append(None)
    needs = tuple(needs)
    ctx.needs_input_grad = _NEEDS.get(needs, needs)  # shared tuples: fewer objects for the collector
    saved, versions = [], []
    save = op.save
    T = _disp._Tensor
    if op.save_for is not None and save and (len(needs) != len(args) or False in needs):
        save = _needed_saves(op, args, needs, T)  # (every argument a tensor needing grad: all are saved)
    new_args = []
    remaining = len(tensors)  # input tensors not met yet: lists are searched only while some remain
    for i, a in enumerate(args):
        if isinstance(a, T):
            remaining -= 1
            if i not in save:
                new_args.append(TensorMeta(a))
            elif repl is not None and i in repl:  # the forward's own copy: nothing to version-check
                s = T._make(repl[i], a._device)
                saved.append(s)
                new_args.append(s)
            else:
                s = _alias(a)
                saved.append(s)
                versions.append((s, a._vc.v))
                new_args.append(s)
        elif remaining and type(a) in (list, tuple):
            keep = i in save
            items = []
            found = False
            for b in a:
                if isinstance(b, T):
                    found = True
                    remaining -= 1
                    if keep:
                        s = _alias(b)
                        saved.append(s)
                        versions.append((s, b._vc.v))
                        items.append(s)
                    else:
                        items.append(TensorMeta(b))
                else:
                    items.append(b)
            new_args.append(type(a)(items) if found else a)
        else:
            new_args.append(a)
    ctx.args = tuple(new_args)
    single = not isinstance(out, (tuple, list))  # the common case: one output
    if op.save_out or (kept is not None and kept.save_out):
        o = out if single else out[0]
        s = _alias(o)
        ctx.out = s
        saved.append(s)
        versions.append((s, o._vc.v))
    ctx._saved = tuple(saved) if saved else ()
    ctx._versions = versions if versions else ()
    if single:
        node = Node(op, ctx, edges, 1)
        if isinstance(out, T) and out._dtype.is_floating_point:
            out.requires_grad = True
            out.grad_fn = node
            out._output_nr = 0
        return out
    if len(out) > 1:
        ctx.out_metas = [TensorMeta(o) if isinstance(o, T) else None for o in out]
    node = Node(op, ctx, edges, len(out))
    for i, o in enumerate(out):
        if isinstance(o, T) and o._dtype.is_floating_point:
            o.requires_grad = True
            o.grad_fn = node
            o._output_nr = i
    return out


def _needed_saves(op, args, needs, T):
    """The subset of ``op.save`` some input needing a gradient reads (``OpDef.save_for``). Plain loops: this
    runs on every recorded mul/div."""
    n = len(args)
    need_at = [False] * n
    k = 0
    for i in range(n):
        if isinstance(args[i], T):
            need_at[i] = needs[k]
            k += 1
    out = []
    save_for = op.save_for
    for i in op.save:
        for j in save_for[i]:
            if j < n and need_at[j]:
                out.append(i)
                break
    return out


_NO_KWARGS = MappingProxyType({})  # shared by nodes called without keyword arguments (read-only)
_NEEDS = {t: t for t in ((True,), (False,), (True, True), (True, False), (False, True), (True, True, True),
                         (True, True, False), (True, False, True), (True, False, False))}


def attach_view(op, t, args, out):
    """``attach`` for a view op of one tensor that saves nothing (``dispatcher.call_view``): the same
    node, built without the general argument walk."""
    if op.save or op.save_out:
        return attach(op, (t,) + args, {}, [t], out)
    ctx = Ctx()
    ctx.op_name = op.name
    ctx.kwargs = _NO_KWARGS
    ctx.needs_input_grad = (True,)
    ctx.args = (TensorMeta(t),) + args
    ctx._saved = ()
    ctx._versions = ()
    gf = t.grad_fn
    node = Node(op, ctx, [(gf, t._output_nr) if gf is not None else (_accumulate_node(t), 0)], 1)
    if out._dtype.is_floating_point:
        out.requires_grad = True
        out.grad_fn = node
        out._output_nr = 0
    return out


_disp._autograd_record = record
_disp._autograd_attach_view = attach_view


# ---------------------------------------------------------------------------------------------
# engine

def _collect(roots):
    """Dependency counts over the graph reachable from root nodes."""
    deps = {}
    seen = set()
    stack = [n for n in roots if n is not None]
    for n in stack:
        seen.add(n)
    while stack:
        n = stack.pop()
        for e in n.next:
            if e is None:
                continue
            m = e[0]
            deps[m] = deps.get(m, 0) + 1
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return deps


def _run_pre_hooks(node, idx, g):
    if node.pre_hooks:
        for (i, fn, _retains) in list(node.pre_hooks.values()):
            if i == idx:
                r = fn(g)
                if r is not None and not _retains:
                    g = r
    return g


def run_engine(roots, grads, retain_graph, capture=None, accumulate=True):
    """Backpropagate ``grads`` from ``roots`` (list of (node, output_nr)).

    ``capture``: {(node, output_nr): None} filled with gradients flowing into those edges
    (``autograd.grad``); with ``accumulate=False`` leaves are not written. Formulas and hooks run with
    grad mode off (as PyTorch's engine without create_graph), set once for the whole pass.
    """
    prev = _grad_state.enabled
    _grad_state.enabled = False
    try:
        _run(roots, grads, retain_graph, capture, accumulate)
    finally:
        _grad_state.enabled = prev


def _run(roots, grads, retain_graph, capture, accumulate):
    buffers: dict = {}
    shared = None  # ids of gradients one node handed to several edges (see AccumulateGrad.accumulate)
    root_nodes = []
    for (node, idx), g in zip(roots, grads):
        if node is None:
            continue
        buf = buffers.setdefault(node, [None] * node.n_out)
        buf[idx] = g if buf[idx] is None else buf[idx] + g
        root_nodes.append(node)
    deps = _collect(root_nodes)
    heap = []
    pushed = set()
    for n in set(root_nodes):
        if deps.get(n, 0) == 0:
            heapq.heappush(heap, (-n.seq, id(n), n))
            pushed.add(n)
    while heap:
        _, _, node = heapq.heappop(heap)
        n_out = node.n_out
        buf = buffers.pop(node, None) or [None] * n_out
        if node.pre_hooks:
            for i in range(n_out):
                if buf[i] is not None:
                    buf[i] = _run_pre_hooks(node, i, buf[i])
        if capture is not None:
            for i in range(n_out):
                if (node, i) in capture and buf[i] is not None:
                    prev = capture[(node, i)]
                    capture[(node, i)] = buf[i] if prev is None else prev + buf[i]
        if type(node) is AccumulateGrad:
            g = buf[0]
            if accumulate and g is not None:
                node.accumulate(g, shared is not None and id(g) in shared)
            continue
        if (buf[0] is None) if n_out == 1 else all(b is None for b in buf):
            in_grads = [None] * len(node.next)
        else:
            if n_out > 1 and any(b is None for b in buf):
                buf = _fill_zeros(node, buf)
            in_grads = node.apply(buf)
            if not retain_graph:
                _free(node.ctx)
        nxt = node.next
        if len(in_grads) < len(nxt):
            in_grads = tuple(in_grads) + (None,) * (len(nxt) - len(in_grads))
        seen = None if len(nxt) > 1 else ()  # () : one edge, nothing can repeat
        for e, g in zip(nxt, in_grads):
            if e is None:
                continue
            m, idx = e
            if g is not None:
                # one tensor returned for several inputs (add's g, g) flows on uncopied (buffers sum out
                # of place, formulas do not write their gradients); a leaf it reaches copies it before
                # making it .grad, which later changes in place
                if seen is None:
                    seen = {id(g)}
                elif seen:
                    if id(g) in seen:
                        if shared is None:
                            shared = set()
                        shared.add(id(g))
                    else:
                        seen.add(id(g))
                mb = buffers.get(m)
                if mb is None:
                    mb = buffers[m] = [None] * m.n_out
                if mb[idx] is None:
                    mb[idx] = g
                else:
                    mb[idx] = _sum_grads(mb[idx], g)
            d = deps[m] - 1
            deps[m] = d
            if d == 0 and m not in pushed:
                pushed.add(m)
                heapq.heappush(heap, (-m.seq, id(m), m))
        if node.ctx._versions is None:
            # a freed node cannot run again (its root raises "backward through the graph a second
            # time"): dropping its edges lets the rest of the graph die with the step instead of
            # living on behind a kept loss tensor, where Python's collector would traverse it
            node.next = ()


def _sum_grads(a, b):
    """``a + b`` for two gradients flowing into one input (a tensor used twice: the residual stream), by
    the add op's backend kernel without the dispatcher when both are plain tensors of one dtype, shape and
    device (the engine runs with grad mode off and nothing is recorded); else the dispatched add."""
    T = _disp._Tensor
    if (type(a) is T and type(b) is T and a._device is b._device and a._dtype is b._dtype
            and a._data.shape == b._data.shape):
        dev = a._device
        k = _disp.REGISTRY["vt::add"].kernels.get(_disp.CUDA_KEY if dev.type == "cuda" else _disp.CPU_KEY)
        if k is not None and _disp._autocast_hook is None:
            with _disp._be.device_guard(dev):
                out = k(a._data, b._data)
            return T._make(out.out if type(out) is _disp.Keep else out, dev)
    return a + b


def _free(ctx):
    """Drop what a node saved once its backward ran (the graph may stay referenced, e.g. by a loss
    kept in a list: its activations must not). A freed node never runs again (``saved`` raises), so
    its arguments go too."""
    ctx._versions = None  # freed
    ctx._saved = ()
    ctx.args = ()
    ctx.kwargs = _NO_KWARGS
    if ctx.out is not None:  # set in the instance only by nodes that saved their output
        ctx.out = None
    if ctx.kept is not None:
        ctx.kept = None


def _fill_zeros(node, buf):
    # an unused output of a multi-output op gets a zero gradient of its shape (recorded at forward)
    shapes = getattr(node.ctx, "out_metas", None)
    out = list(buf)
    for i, b in enumerate(out):
        if b is None and shapes is not None:
            from . import factories
            m = shapes[i]
            out[i] = factories.zeros(m.shape, dtype=m.dtype, device=m.device)
    return out


def _root_grad(t, g):
    from . import factories
    if g is None:
        if t.numel() != 1:
            raise AutogradError(f"grad can be implicitly created only for scalar outputs; this tensor has shape "
                                f"{tuple(t.shape)}: pass gradient= of the same shape to backward()")
        return factories.ones(t.shape, dtype=t.dtype, device=t.device)
    if not isinstance(g, _disp._Tensor):
        g = factories.tensor(g, dtype=t.dtype, device=t.device)
    if tuple(g.shape) != tuple(t.shape):
        raise AutogradError(f"gradient has shape {tuple(g.shape)} but the output has shape {tuple(t.shape)}")
    return g


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported by vibetensor yet")
    T = _disp._Tensor
    if isinstance(tensors, T):
        tensors = [tensors]
    if grad_tensors is None or isinstance(grad_tensors, T):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    roots, grads = [], []
    for t, g in zip(tensors, grad_tensors):
        if not t.requires_grad:
            raise AutogradError("element 0 of tensors does not require grad and does not have a grad_fn: "
                                "the output was computed without gradient tracking (no_grad?) or from inputs "
                                "that do not require grad")
        roots.append(_edge(t))
        grads.append(_root_grad(t, g))
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, T) else list(inputs)
        cap = {_edge(i): None for i in inputs}
        run_engine(roots, grads, bool(retain_graph), capture=cap, accumulate=False)
        for i in inputs:
            g = cap[_edge(i)]
            if g is not None:
                _accumulate_node(i).accumulate(g) if i.is_leaf else setattr(i, "grad", g)
        return
    run_engine(roots, grads, bool(retain_graph))


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs`` without touching ``.grad``."""
    if create_graph:
        raise NotImplementedError("create_graph=True (higher-order gradients) is not supported by vibetensor yet")
    T = _disp._Tensor
    outputs = [outputs] if isinstance(outputs, T) else list(outputs)
    single = isinstance(inputs, T)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, T):
        grad_outputs = [grad_outputs] * len(outputs)
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise AutogradError(f"grad(): input {i} does not require grad")
    roots = [_edge(o) for o in outputs]
    if any(r is None for r in roots):
        raise AutogradError("grad(): an output does not require grad")
    grads = [_root_grad(o, g) for o, g in zip(outputs, grad_outputs)]
    cap = {}
    for x in inputs:
        cap[_edge(x)] = None
    run_engine(roots, grads, bool(retain_graph), capture=cap, accumulate=False)
    res = []
    for i, x in enumerate(inputs):
        g = cap[_edge(x)]
        if g is None and not allow_unused:
            raise AutogradError(f"grad(): input {i} was not used in the graph; pass allow_unused=True")
        res.append(g)
    return tuple(res)
