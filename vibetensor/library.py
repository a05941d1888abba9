"""``vibetensor.library``: define ops and override kernels from Python (like torch.library).

    lib = Library("ext", "DEF")
    lib.define("ext::square(Tensor x) -> Tensor")
    lib.impl("square", lambda x: x * x, dispatch_key="CPU")       # arrays in, array out
    vt.ops.ext.square(t)

    Library("vt", "IMPL").impl("add", my_add_kernel, dispatch_key="CPU")   # override a built-in

A CPU/CUDA kernel takes backend arrays and returns arrays; an ``Autograd`` kernel takes Tensors
(it is called instead of the default recording). ``impl_backward`` attaches a backward formula.
"""
from __future__ import annotations

import re

from .core import dispatcher as _disp

_SCHEMA = re.compile(r"^\s*(?:(\w+)::)?(\w+)\s*\((.*)\)\s*->\s*(.+)$")


class Library:
    def __init__(self, ns: str, kind: str = "DEF"):
        kind = kind.upper()
        if kind not in ("DEF", "IMPL", "FRAGMENT"):
            raise ValueError(f"Library kind must be 'DEF', 'IMPL' or 'FRAGMENT', got {kind!r}")
        if not re.fullmatch(r"\w+", ns):
            raise ValueError(f"Library namespace must be an identifier, got {ns!r}")
        self.ns = ns
        self.kind = kind
        self._defined: list[str] = []
        self._overrides: list = []

    def define(self, schema: str):
        m = _SCHEMA.match(schema)
        if not m:
            raise ValueError(f"bad schema {schema!r}: expected 'ns::name(Tensor x, ...) -> Tensor'")
        ns, name = m.group(1) or self.ns, m.group(2)
        if ns != self.ns:
            raise ValueError(f"schema namespace {ns!r} does not match the library's {self.ns!r}")
        if self.kind == "IMPL":
            raise RuntimeError("define() needs a Library of kind 'DEF' or 'FRAGMENT'")
        qual = f"{ns}::{name}"
        if qual in _disp.REGISTRY:
            raise ValueError(f"op {qual} is already defined")
        _disp.REGISTRY[qual] = _disp.OpDef(qual, schema=schema)
        self._defined.append(qual)
        return name

    def _op(self, name):
        qual = name if "::" in name else f"{self.ns}::{name}"
        op = _disp.REGISTRY.get(qual)
        if op is None:
            raise KeyError(f"no op {qual!r}: define() it first")
        return op

    def impl(self, name, fn, dispatch_key="CPU"):
        op = self._op(name)
        key = _disp.as_key(dispatch_key)
        self._overrides.append((op, key, op.kernels.get(key)))
        op.kernels[key] = fn
        if op.mixed_cuda is not None and key in (_disp.Key.CUDA, _disp.Key.CPU):
            # the built-in mixed-dtype shortcut must not bypass the user's kernel
            self._overrides.append((op, "mixed_cuda", op.mixed_cuda))
            op.mixed_cuda = None
        return fn

    def impl_backward(self, name, fn):
        op = self._op(name)
        self._overrides.append((op, "backward", op.backward_fn))
        op.backward_fn = fn
        return fn

    def close(self):
        """Undo this library's registrations (restores overridden kernels)."""
        for op, key, prev in reversed(self._overrides):
            if key == "backward":
                op.backward_fn = prev
            elif key == "mixed_cuda":
                op.mixed_cuda = prev
            elif prev is None:
                op.kernels.pop(key, None)
            else:
                op.kernels[key] = prev
        self._overrides.clear()
        for q in self._defined:
            _disp.REGISTRY.pop(q, None)
            ns, name = q.split("::")
            getattr(_disp.ops, ns)._forget(name)
        self._defined.clear()

    def __enter__(self):
        return self

    def __exit__(self, *e):
        self.close()
