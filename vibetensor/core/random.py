"""RNG: ``vt.Generator`` per device, ``vt.manual_seed`` seeding every device's default generator.

CPU (and virtual CPU devices) draw from numpy's Philox; CUDA draws from CuPy's generator on that
device. Same seed, same device, same sequence of calls -> same numbers, across runs.
"""
from __future__ import annotations

import threading

import numpy as np

from . import backend as _be
from .device import Device, device as _as_device

_default_seed = 0x5EED
_defaults: dict = {}
_lock = threading.Lock()


class Generator:
    def __init__(self, device="cpu"):
        self.device = _as_device(device)
        self._seed = _default_seed
        self._impl = None
        self.manual_seed(_default_seed)

    def manual_seed(self, seed: int):
        seed = int(seed)
        if seed < 0:
            seed &= (1 << 64) - 1
        self._seed = seed
        if self.device.type == "cpu":
            self._impl = np.random.Generator(np.random.Philox(seed))
        else:
            cp = _be.cupy_module()
            with _be.device_guard(self.device):
                self._impl = cp.random.RandomState(seed)
        return self

    def seed(self):
        s = int(np.random.SeedSequence().entropy % (1 << 63))
        self.manual_seed(s)
        return s

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """CPU: a uint8 tensor of the bit generator's state (for checkpoints)."""
        if self.device.type != "cpu":
            raise NotImplementedError("Generator.get_state on CUDA is not supported yet; reseed with manual_seed")
        import json
        from . import factories
        # Philox's counter/key/buffer are uint64 arrays: JSON lists (int() fails on an array of several)
        st = json.dumps(self._impl.bit_generator.state,
                        default=lambda o: o.tolist() if isinstance(o, np.ndarray) else int(o)).encode()
        return factories.tensor(np.frombuffer(st, dtype=np.uint8).copy())

    def set_state(self, state):
        if self.device.type != "cpu":
            raise NotImplementedError("Generator.set_state on CUDA is not supported yet; reseed with manual_seed")
        import json
        if not (hasattr(state, "numpy") or isinstance(state, (np.ndarray, bytes, bytearray))):
            raise TypeError(f"Generator.set_state: expected the uint8 tensor from get_state(), got "
                            f"{type(state).__name__}")
        try:
            raw = bytes(state) if isinstance(state, (bytes, bytearray)) else \
                bytes(np.asarray(state.numpy() if hasattr(state, "numpy") else state, dtype=np.uint8))
            st = json.loads(raw.decode())
            if st.get("bit_generator") != type(self._impl.bit_generator).__name__:
                raise ValueError(f"a {st.get('bit_generator')!r} state, this generator is "
                                 f"{type(self._impl.bit_generator).__name__}")
            self._impl.bit_generator.state = st
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:  # json's errors are ValueErrors
            raise ValueError(f"Generator.set_state: the state is not one saved by Generator.get_state() on a CPU "
                             f"generator ({type(e).__name__}: {str(e)[:80]}); pass get_state()'s tensor unchanged"
                             ) from None
        return self

    # -- sampling into backend arrays (used by factories and ops)
    def random(self, shape, np_dtype):
        if self.device.type == "cpu":
            dt = np_dtype if np_dtype in (np.float32, np.float64) else np.float32
            return self._impl.random(shape, dtype=dt).astype(np_dtype, copy=False)
        with _be.device_guard(self.device):
            dt = np_dtype if np_dtype in (np.float32, np.float64) else np.float32
            return self._impl.random_sample(shape, dtype=dt).astype(np_dtype, copy=False)

    def normal(self, shape, np_dtype, mean=0.0, std=1.0):
        if self.device.type == "cpu":
            dt = np_dtype if np_dtype in (np.float32, np.float64) else np.float32
            out = self._impl.standard_normal(shape, dtype=dt)
        else:
            with _be.device_guard(self.device):
                dt = np_dtype if np_dtype in (np.float32, np.float64) else np.float32
                out = self._impl.standard_normal(shape, dtype=dt)
        if std != 1.0:
            out *= std
        if mean != 0.0:
            out += mean
        return out.astype(np_dtype, copy=False)

    def integers(self, low, high, shape, np_dtype):
        if self.device.type == "cpu":
            return self._impl.integers(low, high, size=shape, dtype=np.int64).astype(np_dtype, copy=False)
        with _be.device_guard(self.device):
            return self._impl.randint(low, high, size=shape, dtype=np.int64).astype(np_dtype, copy=False)

    def permutation(self, n):
        if self.device.type == "cpu":
            return self._impl.permutation(n).astype(np.int64)
        with _be.device_guard(self.device):
            return self._impl.permutation(n).astype(np.int64)


def default_generator(dev: Device) -> Generator:
    g = _defaults.get(dev)
    if g is None:
        with _lock:
            g = _defaults.get(dev)
            if g is None:
                g = _defaults[dev] = Generator(dev)
    return g


def manual_seed(seed: int):
    """Seed every device's default generator (existing ones now, new ones when created)."""
    global _default_seed
    _default_seed = int(seed)
    with _lock:
        for g in _defaults.values():
            g.manual_seed(seed)
    return default_generator(Device("cpu"))


def seed():
    return default_generator(Device("cpu")).seed()


def initial_seed():
    return _default_seed


def gen_for(generator, dev: Device) -> Generator:
    if generator is None:
        return default_generator(dev)
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a vt.Generator, got {type(generator).__name__}; "
                        f"create one with vt.Generator(device='{dev}').manual_seed(seed)")
    if generator.device.type != dev.type:
        raise ValueError(f"generator is on {generator.device} but the tensor is on {dev}; "
                         f"create vt.Generator(device='{dev}')")
    return generator
