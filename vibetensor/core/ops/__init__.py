"""Built-in ops, defined once (kernel + backward side by side), in files by kind.

Importing this package registers them all. Kernels take backend arrays (numpy or CuPy) and use
``xp = xp_of(a)``; backward formulas use vt ops on Tensors (so they work on every device and on
sharded tensors). Shared helpers live in ``_util``.
"""
from . import conversion, elementwise, reduce, shape, index, linalg, nn  # noqa: F401
from . import extra_linalg, extra_shape, extra_reduce, extra_elementwise, extra_methods  # noqa: F401,E402
