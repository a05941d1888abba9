"""Top-level functions (``vt.add``, ``vt.cat`` ...): every registered ``vt::`` op under its own name,
plus a few that normalise arguments first."""
from __future__ import annotations

from . import dispatcher as _disp

_SKIP = {"to_dtype", "to_device", "getitem", "index_put"}


def __getattr__(name):
    op = _disp.REGISTRY.get(f"vt::{name}")
    if op is None or name in _SKIP:
        raise AttributeError(name)
    return op


def _export():
    g = globals()
    names = []
    for q, op in _disp.REGISTRY.items():
        ns, name = q.split("::")
        if ns == "vt" and name not in _SKIP and not name.startswith("_") and name not in g:
            g[name] = op
            names.append(name)
    return names


__all__ = _export()
