"""vt.nn: Module, Parameter, layers, and the ``functional``, ``init`` and ``utils`` namespaces
(PyTorch names and semantics)."""
from . import functional, init, utils  # noqa: F401
from .module import Module  # noqa: F401
from .modules import *  # noqa: F403  (the layer classes, listed in modules.__all__)
from .parameter import Parameter  # noqa: F401


def __getattr__(name):
    # nn.parallel (DistributedDataParallel) lives in its own package, loaded on first use
    if name == "parallel":
        import importlib
        mod = importlib.import_module(".parallel", __name__)
        globals()[name] = mod
        return mod
    raise AttributeError(f"module 'vibetensor.nn' has no attribute {name!r}")
