"""Typed errors. Each message says what was wrong, with the values, and how to fix it."""


class VibeTensorError(Exception):
    pass


class ShapeError(VibeTensorError, ValueError):
    pass


class DTypeError(VibeTensorError, TypeError):
    pass


class DeviceMismatchError(VibeTensorError, RuntimeError):
    pass


class DeviceUnavailableError(VibeTensorError, RuntimeError):
    pass


class AutogradError(VibeTensorError, RuntimeError):
    pass


class CheckpointError(VibeTensorError, ValueError):
    pass
