"""Thread-local grad mode: no_grad / enable_grad / set_grad_enabled / inference_mode."""
from __future__ import annotations

import functools
import threading


class _State(threading.local):
    enabled = True
    recording = None  # the op whose forward autograd is running (its kernel may return dispatcher.Keep)
    kept = None       # the Keep that forward returned, for the node about to be recorded


_state = _State()


def is_grad_enabled() -> bool:
    return _state.enabled


class _GradCtx:
    _value = True

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._value
        return self

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with type(self)():
                return fn(*a, **k)
        return wrapper


class no_grad(_GradCtx):
    _value = False


class enable_grad(_GradCtx):
    _value = True


inference_mode = no_grad


class set_grad_enabled(_GradCtx):
    def __init__(self, mode: bool):
        self._value = bool(mode)
        self._prev = _state.enabled
        _state.enabled = self._value  # torch applies it immediately when used as a function

    def __enter__(self):
        return self

    def __call__(self, fn):
        raise TypeError("set_grad_enabled(mode) is not a decorator; use no_grad/enable_grad")
