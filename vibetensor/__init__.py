"""vibetensor: PyTorch-style eager tensors and autograd on a Fabric of devices. ``import vibetensor as vt``."""
from __future__ import annotations

__version__ = "0.1.0"

from .core.dtype import (  # noqa: F401
    dtype, bool_ as bool, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64,
    get_default_dtype, set_default_dtype, promote_types, result_type,
)
from .core.dtype import float16 as half, float32 as float, float64 as double, int64 as long  # noqa: F401
from .core.dtype import int32 as int, int16 as short  # noqa: F401
from .core.device import Device, device  # noqa: F401
from .core.tensor import Tensor, Size, is_tensor  # noqa: F401
from .core.grad_mode import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode  # noqa: F401
from .core import autograd as _autograd  # noqa: F401  (installs the Autograd key)
from .core import inplace as _inplace  # noqa: F401
from .core.dlpack import from_dlpack, to_dlpack  # noqa: F401  (also installs Tensor.__dlpack__)
from .core.factories import (  # noqa: F401
    tensor, as_tensor, from_numpy, zeros, ones, empty, full, zeros_like, ones_like, empty_like, full_like,
    arange, linspace, logspace, eye, rand, randn, randint, randperm, rand_like, randn_like, randint_like,
)
from .core.random import Generator, manual_seed, seed, initial_seed, default_generator  # noqa: F401
from .core import ops as _ops_pkg  # noqa: F401  (registers every built-in op)
from .core.dispatcher import ops  # noqa: F401
from .core.functional import *  # noqa: F401,F403  (vt.add, vt.sum, vt.cat, ... as functions)
from .core.ops.extra_shape import tril_indices, triu_indices  # noqa: F401,E402
from .errors import (  # noqa: F401
    ShapeError, DTypeError, DeviceMismatchError, DeviceUnavailableError, AutogradError, CheckpointError,
)
from . import autograd  # noqa: F401,E402
from . import library  # noqa: F401,E402

# Subsystems load on first use (keeps `import vibetensor` fast and free of GPU/MPI imports).
_LAZY_MODULES = {
    "nn": ".nn", "optim": ".optim", "cuda": ".cuda", "fabric": ".fabric", "collectives": ".collectives",
    "observe": ".observe", "backends": ".backends", "amp": ".amp", "distributed": ".collectives",
    "utils": ".utils",
}
_LAZY_ATTRS = {
    "save": (".serialization", "save"), "load": (".serialization", "load"),
    "autocast": (".amp", "autocast"),

}


def __getattr__(name):
    import importlib
    if name in _LAZY_MODULES:
        mod = importlib.import_module(_LAZY_MODULES[name], __name__)
        globals()[name] = mod
        return mod
    if name in _LAZY_ATTRS:
        modname, attr = _LAZY_ATTRS[name]
        val = getattr(importlib.import_module(modname, __name__), attr)
        globals()[name] = val
        return val
    from .core import dispatcher as _d
    op = _d.REGISTRY.get(f"vt::{name}")
    if op is not None:
        return op
    raise AttributeError(f"module 'vibetensor' has no attribute {name!r}")
from .rank_env import maybe_install_import_hooks as _vt_rank_hooks; _vt_rank_hooks()  # noqa: E402  (mpiexec without vt-launch: failure hooks, torchrun vars)
