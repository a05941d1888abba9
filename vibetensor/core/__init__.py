"""Core runtime: devices, dtypes, backend, Tensor, dispatcher, autograd, ops."""
